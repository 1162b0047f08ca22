"""Supervisor admin: policies, queues, workers, jobs, offers and assignments.

Every save goes through the same domain function the REST API calls (so the admin refuses an
invalid policy with the API's message), and actions (cancel, register) call domain operations.
Structured fields are edited as JSON in the 2023-11-01 wire shape and shown readably in lists.
"""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from routing import clock
from routing.errors import RouterError
from routing.models import (
    Assignment,
    ClassificationPolicy,
    DeliveryStatus,
    DistributionPolicy,
    EventDelivery,
    EventSubscription,
    ExceptionPolicy,
    Job,
    JobStatus,
    Offer,
    Queue,
    RouterTimer,
    Worker,
)
from routing.patches import (
    ClassificationPolicyPatch,
    DistributionPolicyPatch,
    EventSubscriptionPatch,
    ExceptionPolicyPatch,
    QueuePatch,
    WorkerPatch,
)
from routing.queries import worker_views
from routing.services import jobs as job_services
from routing.services import matching, policies, subscriptions
from routing.services import workers as worker_services
from routing.timeline import timeline as event_timeline


class ServiceForm(forms.ModelForm):
    """A ModelForm whose `clean()` asks its admin to build the wire patch and validates it with
    the REST API's parser (`routing.patches`), so invalid input is refused on the form with the
    API's message. `service_admin` is set by `ServiceAdmin.get_form`."""

    id = forms.CharField(max_length=255, help_text="The resource id clients use in the API.")
    service_admin: ClassVar[ServiceAdmin | None] = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        editing = bool(self.instance and self.instance.pk)
        if editing:
            data["id"] = self.instance.pk
        if self.errors or self.service_admin is None or not data.get("id"):
            return data
        try:
            patch = self.service_admin.patch_class.from_wire(self.service_admin.to_patch(data))
            patch.check_complete(created=not editing)
        except RouterError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data


class ServiceAdmin(admin.ModelAdmin):
    """Saves through `upsert(id, patch)`; subclasses say how form data becomes a wire patch,
    parsed by the same `routing.patches` class as the REST API's."""

    form = ServiceForm
    patch_class: Any
    upsert: Callable[..., Any]
    delete: Callable[..., None]
    id_kwarg = "policy_id"
    json_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + (["id"] if obj else [])

    def get_form(self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "id" in form.base_fields:
            del form.base_fields["id"]
        if issubclass(form, ServiceForm):
            form.service_admin = self
        return form

    def to_patch(self, data: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        pk = obj.pk if change else form.cleaned_data["id"]
        try:
            patch = self.patch_class.from_wire(self.to_patch(form.cleaned_data))
            saved, _ = type(self).upsert(**{self.id_kwarg: pk}, patch=patch)
        except RouterError as exc:
            # Validation is re-run at save; should it fail here, show it rather than a 500.
            self.message_user(request, exc.message, level=messages.ERROR)
            return
        self.after_upsert(saved, form.cleaned_data)
        obj.pk = saved.pk

    def after_upsert(self, saved, data: dict[str, Any]) -> None:
        """What the form holds beyond the wire patch (none by default)."""

    def delete_model(self, request, obj):
        self._delete_reporting(request, obj.pk)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._delete_reporting(request, obj.pk)

    def _delete_reporting(self, request, pk: str) -> None:
        # A refused delete (still in use, active jobs) is the domain's answer, not a crash.
        try:
            self.delete_one(pk)
        except RouterError as exc:
            self.message_user(request, f"Could not delete {pk}: {exc.message}", level=messages.ERROR)

    def response_delete(self, request, obj_display, obj_id):
        # The domain refused: back to the object, without Django's "deleted successfully".
        if self.model.objects.filter(pk=obj_id).exists():
            opts = self.model._meta
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj_id]))
        return super().response_delete(request, obj_display, obj_id)

    def delete_one(self, pk: str) -> None:
        type(self).delete(**{self.id_kwarg: pk})


def render_timeline(entries) -> str:
    """Timeline entries as "10:02:03 offered to ana (expires 10:02:33) · …", one per line."""
    if not entries:
        return "— (no events kept)"
    return format_html_join(
        "", '<div class="timeline-entry">{} {}</div>', ((e.at.strftime("%H:%M:%S"), e.text) for e in entries)
    )


def pretty_json(value: Any) -> str:
    return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2))


def describe_rule(rule: dict | None) -> str:
    if not rule:
        return "—"
    kind = rule.get("kind")
    if kind == "expression":
        return f"expression: {rule.get('expression')}"
    if kind == "static":
        return f"static: {json.dumps(rule.get('value'))}"
    if kind == "function":
        return f"function: {rule.get('functionUri')}"
    if kind == "webhook":
        return f"webhook: {rule.get('webhookUri')}"
    return str(kind)


def describe_attachment(a: dict, selectors_key: str, single_key: str) -> str:
    """One queue/worker selector attachment in words, e.g. "if job.vip = true → tier equal 1"."""
    kind = a.get("kind")
    if kind == "static":
        return f"always: {describe_selector(a.get(single_key) or {})}"
    if kind == "conditional":
        selectors = "; ".join(describe_selector(x) for x in a.get(selectors_key) or [])
        return f"if {describe_rule(a.get('condition'))} → {selectors}"
    if kind == "passThrough":
        text = f"pass through: {a.get('key')} {a.get('labelOperator')} job.{a.get('key')}"
        if a.get("expiresAfterSeconds") is not None:
            text += f" (expires after {a['expiresAfterSeconds']} s)"
        return text
    if kind == "ruleEngine":
        return f"selectors from {describe_rule(a.get('rule'))}"
    if kind == "weightedAllocation":
        parts = [
            f"{alloc.get('weight', 0):.0%}: " + "; ".join(describe_selector(x) for x in alloc.get(selectors_key) or [])
            for alloc in a.get("allocations") or []
        ]
        return "weighted: " + " | ".join(parts)
    return str(kind)


def describe_selector(s: dict) -> str:
    text = f"{s.get('key')} {s.get('labelOperator')} {json.dumps(s.get('value'))}"
    if s.get("expiresAfterSeconds") is not None:
        text += f" (expires after {s['expiresAfterSeconds']} s)"
    if s.get("expedite"):
        text += " [expedite]"
    return text


# --- distribution policies -------------------------------------------------------------------


@admin.register(DistributionPolicy)
class DistributionPolicyAdmin(ServiceAdmin):
    model_cls = DistributionPolicy
    patch_class = DistributionPolicyPatch
    upsert = staticmethod(policies.distribution_policy_upsert)
    delete = staticmethod(policies.distribution_policy_delete)
    list_display = ("id", "name", "mode_kind", "offer_expires_after_seconds", "concurrent_offers", "updated_at")
    search_fields = ("id", "name")
    fields = ("id", "name", "offer_expires_after_seconds", "mode")
    readonly_fields = ("mode_summary",)

    @admin.display(description="mode")
    def mode_kind(self, obj):
        return (obj.mode or {}).get("kind")

    @admin.display(description="offers (min–max)")
    def concurrent_offers(self, obj):
        mode = obj.mode or {}
        return f"{mode.get('minConcurrentOffers', 1)}–{mode.get('maxConcurrentOffers', 1)}"

    @admin.display(description="mode")
    def mode_summary(self, obj):
        return pretty_json(obj.mode)

    def to_patch(self, data):
        return {
            "name": data.get("name") or None,
            "offerExpiresAfterSeconds": data.get("offer_expires_after_seconds"),
            "mode": data.get("mode"),
        }


# --- classification policies -----------------------------------------------------------------


@admin.register(ClassificationPolicy)
class ClassificationPolicyAdmin(ServiceAdmin):
    model_cls = ClassificationPolicy
    patch_class = ClassificationPolicyPatch
    upsert = staticmethod(policies.classification_policy_upsert)
    delete = staticmethod(policies.classification_policy_delete)
    list_display = ("id", "name", "fallback_queue_id", "queue_selection", "prioritization", "worker_selection")
    search_fields = ("id", "name")
    fields = (
        "id", "name", "fallback_queue_id", "queue_selector_attachments", "prioritization_rule",
        "worker_selector_attachments",
    )
    readonly_fields = ("queue_selection", "prioritization", "worker_selection")

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        # The change page reads as sentences first; the JSON below is what is edited.
        return (["queue_selection", "prioritization", "worker_selection"] if obj else []) + [
            f for f in fields if f not in ("queue_selection", "prioritization", "worker_selection")
        ]

    @admin.display(description="queue selection")
    def queue_selection(self, obj):
        return format_html_join(
            "", "<div>{}</div>",
            ((describe_attachment(a, "queueSelectors", "queueSelector"),) for a in obj.queue_selector_attachments or []),
        ) or "—"

    @admin.display(description="prioritization")
    def prioritization(self, obj):
        return describe_rule(obj.prioritization_rule)

    @admin.display(description="worker selection")
    def worker_selection(self, obj):
        return format_html_join(
            "", "<div>{}</div>",
            ((describe_attachment(a, "workerSelectors", "workerSelector"),) for a in obj.worker_selector_attachments or []),
        ) or "—"

    def to_patch(self, data):
        return {
            "name": data.get("name") or None,
            "fallbackQueueId": data.get("fallback_queue_id") or None,
            "queueSelectorAttachments": data.get("queue_selector_attachments") or [],
            "prioritizationRule": data.get("prioritization_rule"),
            "workerSelectorAttachments": data.get("worker_selector_attachments") or [],
        }


# --- exception policies ----------------------------------------------------------------------


@admin.register(ExceptionPolicy)
class ExceptionPolicyAdmin(ServiceAdmin):
    model_cls = ExceptionPolicy
    patch_class = ExceptionPolicyPatch
    upsert = staticmethod(policies.exception_policy_upsert)
    delete = staticmethod(policies.exception_policy_delete)
    list_display = ("id", "name", "rules")
    search_fields = ("id", "name")
    fields = ("id", "name", "exception_rules")
    readonly_fields = ("rules",)

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "rules"]
        return (["rules"] if obj else []) + fields

    @admin.display(description="rules")
    def rules(self, obj):
        def action_text(a):
            kind = a.get("kind")
            if kind == "cancel":
                return "cancel" + (f" ({a['dispositionCode']})" if a.get("dispositionCode") else "")
            if kind == "manualReclassify":
                parts = [f"queue {a['queueId']}" if a.get("queueId") else "", f"priority {a['priority']}" if a.get("priority") is not None else ""]
                return "move to " + ", ".join(p for p in parts if p) if any(parts) else "manual reclassify"
            labels = ", ".join(f"{k}={v}" for k, v in (a.get("labelsToUpsert") or {}).items())
            return "reclassify" + (f" with {labels}" if labels else "") + (
                f" by {a['classificationPolicyId']}" if a.get("classificationPolicyId") else ""
            )

        def line(rule):
            trigger = rule.get("trigger", {})
            when = (
                f"queue length > {trigger.get('threshold')}"
                if trigger.get("kind") == "queueLength"
                else f"waited {trigger.get('thresholdSeconds')} s"
            )
            actions = ", then ".join(action_text(a) for a in rule.get("actions", []))
            return (rule.get("id"), when, actions)

        return format_html_join("", "<div><b>{}</b>: when {} → {}</div>", (line(r) for r in obj.exception_rules or []))

    def to_patch(self, data):
        return {"name": data.get("name") or None, "exceptionRules": data.get("exception_rules") or []}


# --- queues ----------------------------------------------------------------------------------


@admin.register(Queue)
class QueueAdmin(ServiceAdmin):
    model_cls = Queue
    patch_class = QueuePatch
    upsert = staticmethod(policies.queue_upsert)
    delete = staticmethod(policies.queue_delete)
    id_kwarg = "queue_id"
    list_display = ("id", "name", "priority", "distribution_policy", "exception_policy", "queued_jobs")
    list_filter = ("distribution_policy", "exception_policy")
    search_fields = ("id", "name")
    fields = ("id", "name", "description", "priority", "distribution_policy", "exception_policy", "labels")

    @admin.display(description="queued jobs")
    def queued_jobs(self, obj):
        return Job.objects.queued_in(obj.pk).count()

    def to_patch(self, data):
        policy = data.get("distribution_policy")
        exception = data.get("exception_policy")
        return {
            "name": data.get("name") or None,
            "description": data.get("description") or "",
            "priority": data.get("priority") or 0,
            "distributionPolicyId": policy.pk if policy else None,
            "exceptionPolicyId": exception.pk if exception else None,
            "labels": {k: val for k, val in (data.get("labels") or {}).items() if k != "Id"},
        }


# --- workers ---------------------------------------------------------------------------------


class WorkerForm(ServiceForm):
    queues = forms.JSONField(
        required=False, initial=list,
        help_text='Queue ids, e.g. ["sales", "support"]. Priorities per queue go in "queue priorities".',
    )
    queue_priorities = forms.JSONField(required=False, initial=dict, help_text='e.g. {"sales": 5}')
    channels = forms.JSONField(
        required=False, initial=list,
        help_text='e.g. [{"channelId": "voice", "capacityCostPerJob": 1, "maxNumberOfJobs": 1}]',
    )

    class Meta:
        model = Worker
        fields = ("capacity", "available_for_offers", "labels", "tags", "user")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        worker = self.instance
        if worker and worker.pk:
            links = list(worker.queue_links.all())
            self.initial["queues"] = [link.queue_id for link in links]
            self.initial["queue_priorities"] = {link.queue_id: link.priority for link in links}
            self.initial["channels"] = [
                {k: val for k, val in {
                    "channelId": c.channel_id, "capacityCostPerJob": c.capacity_cost_per_job,
                    "maxNumberOfJobs": c.max_number_of_jobs,
                }.items() if val is not None}
                for c in worker.channels.all()
            ]


@admin.register(Worker)
class WorkerAdmin(ServiceAdmin):
    model_cls = Worker
    patch_class = WorkerPatch
    form = WorkerForm
    upsert = staticmethod(worker_services.worker_upsert)
    delete = staticmethod(worker_services.worker_delete)
    id_kwarg = "worker_id"
    list_display = ("id", "user", "worker_state", "capacity", "load", "serving_queues", "channel_list")
    list_filter = ("available_for_offers", "channels__channel_id", "queue_links__queue_id")
    search_fields = ("id", "user__username")
    actions = ("register", "deregister")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("channels", "queue_links")

    def _view(self, obj):
        cache = getattr(self, "_views", None)
        if cache is None or cache[0] is not obj:
            self._views = (obj, worker_views([obj])[0])
        return self._views[1]

    @admin.display(description="state")
    def worker_state(self, obj):
        return self._view(obj).state

    @admin.display(description="load")
    def load(self, obj):
        return f"{self._view(obj).load_ratio:.0%}"

    @admin.display(description="queues (priority)")
    def serving_queues(self, obj):
        return ", ".join(f"{link.queue_id} ({link.priority})" for link in obj.queue_links.all())

    @admin.display(description="channels")
    def channel_list(self, obj):
        return ", ".join(f"{c.channel_id}×{c.capacity_cost_per_job}" for c in obj.channels.all())

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *(["timeline"] if obj else [])]

    @admin.display(description="timeline")
    def timeline(self, obj):
        return render_timeline(event_timeline(worker_id=obj.pk))

    def to_patch(self, data):
        return {
            "capacity": data.get("capacity"),
            "availableForOffers": bool(data.get("available_for_offers")),
            "labels": {k: val for k, val in (data.get("labels") or {}).items() if k != "Id"},
            "tags": data.get("tags") or {},
            "queues": data.get("queues") or [],
            "queuePriorities": data.get("queue_priorities") or {},
            "channels": data.get("channels") or [],
        }

    def after_upsert(self, saved, data):
        worker_services.worker_link_user(worker_id=saved.pk, user=data.get("user"))

    @admin.action(description="Register (available for offers)")
    def register(self, request, queryset):
        for worker in queryset:
            worker_services.worker_set_availability(worker_id=worker.pk, available=True)

    @admin.action(description="Deregister (stop offers)")
    def deregister(self, request, queryset):
        for worker in queryset:
            worker_services.worker_set_availability(worker_id=worker.pk, available=False)


# --- jobs, offers, assignments (read-mostly) -------------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class AssignmentInline(ReadOnlyInline):
    model = Assignment
    fields = ("id", "worker", "assigned_at", "completed_at", "closed_at", "unassigned_at")


class OfferInline(ReadOnlyInline):
    model = Offer
    fields = ("id", "worker", "status", "offered_at", "expires_at", "ended_at")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "queue", "channel_id", "priority", "enqueued_at", "waiting", "channel_reference")
    list_filter = ("status", "queue", "channel_id", "classification_policy")
    search_fields = ("id", "channel_reference")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = (OfferInline, AssignmentInline)
    actions = ("cancel_jobs",)
    readonly_fields = (
        "id", "status", "eligible_workers", "channel_reference", "channel_id", "queue", "classification_policy",
        "priority",
        "enqueued_at", "scheduled_at", "disposition_code", "selectors", "labels_display", "tags", "notes_display",
        "matching_mode", "unassignment_count", "created_at", "updated_at", "timeline",
    )
    fields = readonly_fields

    @admin.display(description="timeline")
    def timeline(self, obj):
        return render_timeline(event_timeline(job_id=obj.pk))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    @admin.display(description="waiting")
    def waiting(self, obj):
        if obj.status != "queued" or not obj.enqueued_at:
            return "—"
        seconds = int((clock.now() - obj.enqueued_at).total_seconds())
        return f"{seconds // 60}m {seconds % 60:02d}s"

    @admin.display(description="eligible workers")
    def eligible_workers(self, obj):
        """Why a queued job rings nobody, or how many could take it (`matching.job_eligibility`)."""
        if obj.status != JobStatus.QUEUED or not obj.queue_id:
            return "— (only queued jobs are offered)"
        eligibility = matching.job_eligibility(obj, clock.now())
        if eligibility.available and eligibility.has_policy:
            return eligibility.explain()
        return format_html('<strong class="no-eligible-worker">{}</strong>', eligibility.explain())

    @admin.display(description="worker selectors")
    def selectors(self, obj):
        items = [*obj.requested_worker_selectors, *obj.attached_worker_selectors]
        return format_html_join("", "<div>{}</div>", ((describe_selector(s),) for s in items)) or "—"

    @admin.display(description="labels")
    def labels_display(self, obj):
        return pretty_json(obj.labels)

    @admin.display(description="notes")
    def notes_display(self, obj):
        return format_html_join("", "<div>{}: {}</div>", ((n.get("addedAt"), n.get("message")) for n in obj.notes))

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        done = 0
        for job in queryset:
            try:
                job_services.job_cancel(job_id=job.pk, note=f"Cancelled by {request.user} in the admin")
                done += 1
            except RouterError as exc:
                self.message_user(request, f"{job.pk}: {exc.message}", level=messages.WARNING)
        self.message_user(request, f"Cancelled {done} job(s).")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only domain operations write: the admin lists and shows them, never edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "worker", "status", "offered_at", "expires_at", "ended_at")
    list_filter = ("status", "channel_id")
    search_fields = ("job__id", "worker__id")


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "worker", "channel_id", "assigned_at", "completed_at", "closed_at")
    list_filter = ("channel_id",)
    search_fields = ("job__id", "worker__id")


class FailingTimerFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("failing", "failing (retried with back-off)"), ("pending", "pending"), ("fired", "fired")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(fired_at__isnull=True, attempts__gt=0)
        if self.value() == "pending":
            return queryset.filter(fired_at__isnull=True)
        if self.value() == "fired":
            return queryset.filter(fired_at__isnull=False)
        return queryset


@admin.register(RouterTimer)
class RouterTimerAdmin(ReadOnlyAdmin):
    """Stored due times and owed work. A row whose handler raised shows its attempts and last
    error, and is retried with back-off (filter by "failing")."""

    list_display = ("kind", "target_id", "due_at", "fired_at", "attempts", "short_error")
    list_filter = ("kind", FailingTimerFilter)
    search_fields = ("target_id",)

    @admin.display(description="last error")
    def short_error(self, obj: RouterTimer) -> str:
        return obj.last_error[:120]



# --- router events: subscriptions and deliveries ----------------------------------------------


class EventSubscriptionForm(ServiceForm):
    endpoint_url = forms.URLField(max_length=2048, assume_scheme="https")
    included_event_types = forms.JSONField(
        required=False, initial=list, help_text='e.g. ["Microsoft.Communication.RouterWorkerOfferIssued"]; empty: all',
    )

    class Meta:
        model = EventSubscription
        fields = (
            "endpoint_url", "delivery_schema", "subject_begins_with", "subject_ends_with", "max_delivery_attempts",
            "event_ttl_minutes", "max_events_per_batch", "dead_letter_enabled",
        )


@admin.register(EventSubscription)
class EventSubscriptionAdmin(ServiceAdmin):
    """Webhook subscriptions to router events: saved through `event_subscription_upsert` (as the
    REST API and `manage.py eventsubscription`), with their delivery health and a "send test
    event" action. The signing secret is shown once, when the subscription is created."""

    patch_class = EventSubscriptionPatch
    form = EventSubscriptionForm
    upsert = staticmethod(subscriptions.event_subscription_upsert)
    delete = staticmethod(subscriptions.event_subscription_delete)
    id_kwarg = "subscription_id"
    list_display = ("id", "endpoint_url", "provisioning_state", "health", "last_success_at", "last_failure_at")
    list_filter = ("provisioning_state", "delivery_schema")
    readonly_fields = ("provisioning_state", "validation_outcome", "health", "last_success_at", "last_failure_at",
                       "last_failure")
    actions = ("send_test_event",)

    def to_patch(self, data):
        return {
            "endpointUrl": data.get("endpoint_url"),
            "eventDeliverySchema": data.get("delivery_schema") or None,
            "includedEventTypes": data.get("included_event_types") or [],
            "subjectBeginsWith": data.get("subject_begins_with") or "",
            "subjectEndsWith": data.get("subject_ends_with") or "",
            "maxDeliveryAttempts": data.get("max_delivery_attempts"),
            "eventTimeToLiveInMinutes": data.get("event_ttl_minutes"),
            "maxEventsPerBatch": data.get("max_events_per_batch"),
            "deadLetterEnabled": bool(data.get("dead_letter_enabled")),
        }

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        saved = EventSubscription.objects.filter(pk=obj.pk).first()
        if saved is not None and not change:
            self.message_user(request, f"Signing secret of {saved.pk} (shown only now): {saved.signing_secret}")

    @admin.display(description="delivery health")
    def health(self, obj):
        counts = {status: EventDelivery.objects.filter(subscription=obj, status=status).count()
                  for status in (DeliveryStatus.PENDING, DeliveryStatus.DEAD_LETTERED)}
        failing = EventDelivery.objects.filter(subscription=obj, status=DeliveryStatus.PENDING, attempts__gt=0).count()
        state = "failing" if failing else "healthy"
        return (f"{state}: {counts[DeliveryStatus.PENDING]} pending ({failing} retrying), "
                f"{counts[DeliveryStatus.DEAD_LETTERED]} dead-lettered")

    @admin.action(description="Send a test event")
    def send_test_event(self, request, queryset):
        for sub in queryset:
            try:
                subscriptions.event_subscription_send_test(subscription_id=sub.pk)
                self.message_user(request, f"Test event owed to {sub.pk}.")
            except RouterError as exc:
                self.message_user(request, f"{sub.pk}: {exc.message}", level=messages.WARNING)


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    """Each event owed to each subscription; the dead-lettered ones keep their reason, attempts
    and last outcome and can be sent again ("Redeliver")."""

    list_display = ("event_type", "subject", "subscription", "status", "attempts", "last_outcome",
                    "dead_letter_reason", "due_at")
    list_filter = ("status", "subscription", "dead_letter_reason")
    search_fields = ("event__job_id", "event__worker_id", "event__subject")
    list_select_related = ("event",)
    actions = ("redeliver",)

    @admin.display(description="event")
    def event_type(self, obj):
        return obj.event.event_type.rsplit(".", 1)[-1]

    @admin.display(description="subject")
    def subject(self, obj):
        return obj.event.subject

    @admin.action(description="Redeliver (dead-lettered only)")
    def redeliver(self, request, queryset):
        count = subscriptions.deliveries_redeliver(delivery_ids=queryset.values_list("pk", flat=True),
                                                   now=clock.now())
        self.message_user(request, f"{count} dead-lettered delivery(ies) queued again.")
