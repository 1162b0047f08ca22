"""Pages: the agent desk, the customer waiting room and self-service join, the supervisor's
live view. Thin: each renders a template or calls one domain function."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from routing.errors import RouterError
from routing.models import Queue, Worker
from routing.services import customers


@login_required
def desk(request: HttpRequest) -> HttpResponse:
    worker = Worker.objects.filter(user_id=request.user.pk or 0).first()
    if worker is None:
        return render(request, "agents/no_worker.html", status=403)
    return render(request, "agents/desk.html", {"worker": worker})


def waiting_room(request: HttpRequest, token: str) -> HttpResponse:
    try:
        customers.job_for_link(token)
    except RouterError as exc:
        return render(request, "agents/link_invalid.html", {"message": exc.message}, status=403)
    return render(request, "agents/waiting_room.html", {"token": token})


def _parse_extra(text: str) -> dict[str, str]:
    data = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            data[key.strip()] = value.strip()
    return data


@login_required
def join_queue(request: HttpRequest) -> HttpResponse:
    """Self-service (seed 002 Q11): a logged-in customer picks a queue and joins it."""
    assert isinstance(request.user, User)  # login_required
    waiting = customers.customer_waiting_job(request.user)
    if waiting is not None:
        return redirect(customers.waiting_room_link(job_id=waiting.pk).path)
    if request.method == "POST":
        try:
            job = customers.customer_join_queue(
                user=request.user,
                queue_id=request.POST.get("queue", ""),
                channel_id=str(settings.JOBROUTER_SELF_SERVICE_CHANNEL),
                data=_parse_extra(request.POST.get("extra", "")),
            )
        except RouterError as exc:
            messages.error(request, exc.message)
        else:
            return redirect(customers.waiting_room_link(job_id=job.pk).path)
    return render(request, "agents/join.html", {"queues": Queue.objects.order_by("-priority", "name", "pk")})


@staff_member_required
def supervisor(request: HttpRequest) -> HttpResponse:
    return render(request, "agents/supervisor.html", {"title": "Live view"})
