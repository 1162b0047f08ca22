"""The OpenAPI document (routing/api/openapi.py, served at /routing/openapi.json) describes exactly
the operations routing/api/urls.py routes: every documented path and method resolves to a view
that implements it (with the colon verb it names), and every routed view, method and verb is
documented."""

from __future__ import annotations

import re

from django.urls import resolve

from routing.api import openapi
from routing.api import urls as api_urls
from tests.inprocess import signed_request

METHODS = ("get", "patch", "delete", "post")


def _documented() -> list[tuple[str, str, str]]:
    """(concrete path, method, verb or "") for every documented operation."""
    operations = []
    for template, item in openapi.document()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", template)
        verb = concrete.rsplit("/", 1)[-1].partition(":")[2]
        operations += [(concrete, method, verb) for method in METHODS if method in item]
    return operations


def test_every_documented_operation_is_routed_to_a_view_that_implements_it():
    for path, method, verb in _documented():
        match = resolve(path)
        view_class = match.func.cls
        assert hasattr(view_class, method), (path, method)
        if verb:
            assert verb in view_class.verbs, (path, verb)


def test_every_routed_view_method_and_verb_is_documented():
    documented: dict[str, set[str]] = {}
    for path, method, verb in _documented():
        route = resolve(path).route
        documented.setdefault(route, set()).add(f"{method}:{verb}" if verb else method)
    for pattern in api_urls.urlpatterns:
        route = "routing/" + str(pattern.pattern)
        view_class = pattern.callback.cls
        expected = {m for m in METHODS if hasattr(view_class, m) and m != "post"}
        if hasattr(view_class, "post"):
            expected |= {f"post:{verb}" for verb in view_class.verbs}
        assert documented.get(route) == expected, (route, documented.get(route), expected)


def test_the_document_is_served(router_clock, access_key):
    response = signed_request("GET", "/routing/openapi.json", access_key)
    assert response.status_code == 200
    body = response.json()
    assert body["openapi"].startswith("3.")
    assert "/routing/jobs/{jobId}:cancel" in body["paths"]
