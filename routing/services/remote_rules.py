"""Function and webhook rules over HTTP (ACS Job Router 2023-11-01 FunctionRouterRule,
WebhookRouterRule). Never called inside a database transaction.

- function: POST JSON to `functionUri`, with the function key as the `x-functions-key` header
  (Azure Functions' convention) and, when given, `appKey` / `clientId` as `x-app-key` /
  `x-client-id`.
- webhook: an OAuth2 client-credentials token from `authorizationServerUri` (requests-oauthlib),
  cached (in Django's shared cache) until shortly before it expires, then POST JSON to `webhookUri` with `Authorization:
  Bearer <token>`.
Any transport error, timeout, non-2xx status or non-JSON answer raises RuleError with a reason
that ends up in the job's classification error.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import requests
from django.conf import settings
from django.core.cache import cache
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests_oauthlib import OAuth2Session

from routing.engine.rules import RuleError

# Renew a cached token this many seconds before it expires.
TOKEN_EXPIRY_MARGIN_SECONDS = 30


def _timeout() -> float:
    return settings.JOBROUTER_RULE_TIMEOUT_SECONDS


def _post_json(url: str, payload: Mapping[str, Any], headers: dict[str, str]) -> Any:
    try:
        response = requests.post(url, json=payload, headers=headers, timeout=_timeout())
    except requests.RequestException as exc:
        raise RuleError(f"POST {url} failed: {exc.__class__.__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise RuleError(f"POST {url} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise RuleError(f"POST {url} did not answer JSON") from exc


def _token(rule: Mapping[str, Any]) -> str:
    credential = rule.get("clientCredential") or {}
    token_url = rule.get("authorizationServerUri")
    if not token_url:
        raise RuleError("webhook rule has no authorizationServerUri")
    client_id, secret = credential.get("clientId", ""), credential.get("clientSecret", "")
    # The cache is shared by every process (database or Redis), so one token serves them all.
    cache_key = "routing.webhook-token." + hashlib.sha256(f"{token_url}\0{client_id}\0{secret}".encode()).hexdigest()
    cached = cache.get(cache_key)
    if cached:
        return cached
    try:
        session = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
        token = session.fetch_token(
            token_url=token_url, client_id=client_id, client_secret=secret, timeout=_timeout(), include_client_id=True
        )
    except (OAuth2Error, requests.RequestException, ValueError) as exc:
        raise RuleError(f"token request to {token_url} failed: {exc}") from exc
    access = token.get("access_token")
    if not access:
        raise RuleError(f"token response from {token_url} has no access_token")
    lifetime = float(token.get("expires_in") or 300)
    cache.set(cache_key, access, timeout=max(1.0, lifetime - TOKEN_EXPIRY_MARGIN_SECONDS))
    return access


def call_remote_rule(rule: Mapping[str, Any], payload: Mapping[str, Any]) -> Any:
    """Evaluate a function or webhook rule: POST `payload`, return the decoded JSON answer.
    A function may answer a bare value or `{"value": …}` / `{"result": …}`."""
    kind = rule.get("kind")
    if kind == "function":
        credential = rule.get("credential") or {}
        headers = {}
        if credential.get("functionKey"):
            headers["x-functions-key"] = credential["functionKey"]
        if credential.get("appKey"):
            headers["x-app-key"] = credential["appKey"]
        if credential.get("clientId"):
            headers["x-client-id"] = credential["clientId"]
        answer = _post_json(rule["functionUri"], payload, headers)
    elif kind == "webhook":
        if not rule.get("webhookUri"):
            raise RuleError("webhook rule has no webhookUri")
        answer = _post_json(rule["webhookUri"], payload, {"Authorization": f"Bearer {_token(rule)}"})
    else:
        raise RuleError(f"{kind} is not a remote rule")
    if isinstance(answer, dict) and len(answer) == 1 and set(answer) & {"value", "result"}:
        return next(iter(answer.values()))
    return answer


def has_remote_rules(value: Any) -> bool:
    """Whether a stored policy structure contains a function or webhook rule anywhere."""
    if isinstance(value, dict):
        return value.get("kind") in ("function", "webhook") and (
            "functionUri" in value or "webhookUri" in value
        ) or any(has_remote_rules(v) for v in value.values())
    if isinstance(value, list):
        return any(has_remote_rules(v) for v in value)
    return False
