"""HMAC-SHA256 request authentication, as the Azure Communication Services SDK signs requests.

Source of the behaviour: ACS Job Router data-plane API 2023-11-01, spec §1.2, and the client's own
signer `azure/communication/jobrouter/_shared/policy.py::HMACCredentialsPolicy`
(azure-communication-jobrouter==1.0.0). For every request the client sends:

    x-ms-date:           RFC 1123 UTC time, e.g. "Wed, 13 Apr 2022 18:09:12 GMT"
    x-ms-content-sha256: base64(sha256(body)); an absent body hashes as b""
    Authorization:       "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<b64>"

where Signature = base64(HMAC-SHA256(key=base64decode(accessKey), msg=stringToSign)) and

    stringToSign = VERB + "\n" + pathAndQuery + "\n" + x-ms-date + ";" + host + ";" + contentHash

This module holds a pure verifier (`verify_signature`), the matching signer (`sign_request`, used by
tests and benchmark scripts), and a Django middleware (`HmacAuthenticationMiddleware`) that guards
every `/routing...` path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from routing import clock
from routing.api.middleware import GateMiddleware

__all__ = [
    "AUTH_SCHEME",
    "SIGNED_HEADERS",
    "HmacAuthError",
    "HmacAuthenticationMiddleware",
    "compute_hmac",
    "content_hash",
    "raw_request_target",
    "sign_request",
    "string_to_sign",
    "verify_signature",
]

AUTH_SCHEME = "HMAC-SHA256"
# The only SignedHeaders list the SDK ever sends; its order fixes the layout of the string to sign,
# so any other list (even a permutation) cannot describe a signature we know how to check.
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
_SIGNED_HEADER_NAMES = tuple(SIGNED_HEADERS.split(";"))

# Path prefix of the Job Router data-plane API; everything under it requires a valid signature.
_PROTECTED_PREFIX = "routing"


class HmacAuthError(Exception):
    """A request failed HMAC authentication; `str(exc)` says which check failed.

    The message is safe to return to the client (it never contains the key or the expected
    signature): it names the missing header, the unparsable date, the clock skew, a content hash
    mismatch or a signature mismatch.
    """


# --------------------------------------------------------------------------------------------------
# Primitives (shared by the signer and the verifier so both compute exactly the same thing)
# --------------------------------------------------------------------------------------------------


def _decode_key(access_key: str) -> bytes:
    # Decoded the same lenient way the client does (`base64.b64decode(key)` without validate), so
    # keys such as the SDK playback key "fake===" behave identically on both sides. A key that is
    # not base64 at all is a server misconfiguration, not a client error: binascii.Error (a
    # ValueError) propagates. settings.py already validates JOBROUTER_ACCESS_KEY at start-up.
    return base64.b64decode(access_key)


def _hmac_digest(value: str, access_key: str) -> bytes:
    return hmac.new(_decode_key(access_key), value.encode("utf-8"), hashlib.sha256).digest()


def compute_hmac(value: str, access_key: str) -> str:
    """Return base64(HMAC-SHA256(key=base64decode(access_key), msg=utf8(value))) (spec §1.2 step 4).

    Mirrors `HMACCredentialsPolicy._compute_hmac`; e.g. `compute_hmac("banana", "pw==")` is
    `"88EC05aAS9iXnaimtNO78JLjiPtfWryQB/5QYEzEsu8="`.
    """
    return base64.b64encode(_hmac_digest(value, access_key)).decode("ascii")


def content_hash(body: bytes) -> str:
    """Return base64(sha256(body)), the `x-ms-content-sha256` value (spec §1.2 step 2).

    The client hashes the UTF-8 encoding of its (string) body; the server hashes the raw bytes it
    received, which are the same bytes. An empty body gives
    `"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="`.
    """
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def string_to_sign(*, method: str, path_and_query: str, date: str, host: str, body_hash: str) -> str:
    """Return `VERB\\npathAndQuery\\nx-ms-date;host;contentHash` (spec §1.2 step 3).

    `method` is upper-cased as the client does; `path_and_query` must be the raw, still
    percent-encoded request target (e.g. `/routing/jobs/a%20b?api-version=2023-11-01`); `host` is
    `host[:port]` without scheme.
    """
    return f"{method.upper()}\n{path_and_query}\n{date};{host};{body_hash}"


def _format_rfc1123(moment: datetime) -> str:
    # email.utils.format_datetime is locale-independent (strftime's %a/%b are not) and yields
    # exactly the client's "%a, %d %b %Y %H:%M:%S GMT" shape. Naive datetimes are taken as UTC.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_datetime(moment.astimezone(timezone.utc).replace(microsecond=0), usegmt=True)


# --------------------------------------------------------------------------------------------------
# Signer
# --------------------------------------------------------------------------------------------------


def sign_request(
    *,
    method: str,
    path_and_query: str,
    host: str,
    body: bytes,
    access_key: str,
    date: datetime | None = None,
) -> dict[str, str]:
    """Sign a raw request exactly as `HMACCredentialsPolicy` does (ACS Job Router 2023-11-01, §1.2).

    Args:
        method: HTTP verb (any case; signed upper-cased).
        path_and_query: the request target as it will go on the wire, percent-encoded,
            e.g. `/routing/jobs/j1?api-version=2023-11-01`.
        host: `host[:port]` as the client's endpoint names it (no scheme).
        body: the exact body bytes that will be sent (`b""` for none).
        access_key: base64 access key.
        date: signing time (default: now); naive values are taken as UTC.

    Returns:
        `{"x-ms-date": ..., "x-ms-content-sha256": ..., "Authorization": ...}` to merge into the
        request headers. (The SDK also sends `x-ms-return-client-request-id: true`; it is not part
        of the signature and is left to the caller.)
    """
    date_header = _format_rfc1123(date if date is not None else datetime.now(timezone.utc))
    body_hash = content_hash(body)
    signature = compute_hmac(
        string_to_sign(
            method=method,
            path_and_query=path_and_query,
            date=date_header,
            host=host,
            body_hash=body_hash,
        ),
        access_key,
    )
    return {
        "x-ms-date": date_header,
        "x-ms-content-sha256": body_hash,
        "Authorization": f"{AUTH_SCHEME} SignedHeaders={SIGNED_HEADERS}&Signature={signature}",
    }


# --------------------------------------------------------------------------------------------------
# Verifier
# --------------------------------------------------------------------------------------------------


def _parse_authorization(value: str) -> bytes:
    """Parse `HMAC-SHA256 SignedHeaders=...&Signature=...`; return the decoded signature bytes."""
    scheme, _, params = value.strip().partition(" ")
    # Auth schemes are case-insensitive (RFC 9110 §11.1); the SDK always sends "HMAC-SHA256".
    if scheme.upper() != AUTH_SCHEME:
        raise HmacAuthError(f"Authorization header must use the {AUTH_SCHEME} scheme")
    fields: dict[str, str] = {}
    for part in params.strip().split("&"):
        # Split on the first '=' only: base64 signatures end in '=' padding.
        name, sep, field_value = part.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise HmacAuthError("Authorization header is malformed: expected name=value pairs joined by '&'")
        if name in fields:
            raise HmacAuthError(f"Authorization header repeats the {name!r} parameter")
        fields[name] = field_value.strip()
    if "signedheaders" not in fields:
        raise HmacAuthError("Authorization header lacks SignedHeaders")
    if "signature" not in fields:
        raise HmacAuthError("Authorization header lacks Signature")
    # Header names are case-insensitive, but the list and its order must be exactly the SDK's.
    signed = tuple(h.strip().lower() for h in fields["signedheaders"].split(";"))
    if signed != _SIGNED_HEADER_NAMES:
        raise HmacAuthError(f"Authorization SignedHeaders must be exactly {SIGNED_HEADERS!r}")
    try:
        # Compare decoded digests rather than base64 text, so the comparison is over fixed-length
        # bytes; validate=True rejects stray characters instead of silently dropping them.
        signature = base64.b64decode(fields["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise HmacAuthError("Authorization Signature is not valid base64") from None
    if len(signature) != hashlib.sha256().digest_size:
        raise HmacAuthError("Authorization Signature has the wrong length for HMAC-SHA256")
    return signature


def _parse_date(value: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        # Python < 3.10 raised TypeError, newer versions ValueError; never trust the exact type.
        raise HmacAuthError(f"x-ms-date is not a valid RFC 1123 date: {value!r}") from None
    if parsed.tzinfo is None:
        # parsedate_to_datetime returns a naive value for "-0000" (UTC, source zone unknown).
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def verify_signature(
    *,
    method: str,
    path_and_query: str,
    host: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    now: datetime,
    max_skew_seconds: float,
) -> None:
    """Verify an HMAC-SHA256 signed request (ACS Job Router 2023-11-01, spec §1.2).

    Args:
        method: HTTP verb as received.
        path_and_query: the raw request target as received, still percent-encoded
            (e.g. `/routing/jobs/a%20b%2Fc?api-version=2023-11-01`). It is used verbatim: the
            client signs what it puts on the wire (including aiohttp/yarl's normalised form), so
            decoding or normalising here would break valid signatures.
        host: the `Host` header value (`host[:port]`).
        headers: request headers; looked up case-insensitively.
        body: the raw body bytes as received.
        access_key: base64 access key.
        now: the server's current time (naive values are taken as UTC).
        max_skew_seconds: largest allowed |now - x-ms-date|, in seconds.

    Returns None on success. Raises `HmacAuthError` naming the failed check: a missing header, a
    malformed Authorization header, an unparsable or out-of-skew `x-ms-date`, a content hash
    mismatch, or a signature mismatch.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    for required in ("authorization", "x-ms-date", "x-ms-content-sha256"):
        if not lowered.get(required):
            raise HmacAuthError(f"Missing {required} header")
    if not host:
        raise HmacAuthError("Missing host header")

    provided_signature = _parse_authorization(lowered["authorization"])

    date_header = lowered["x-ms-date"]
    signed_at = _parse_date(date_header)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    skew = abs((now - signed_at).total_seconds())
    if skew > max_skew_seconds:
        # Bounds replay of captured requests; the spec suggests about ±15 minutes (§1.2).
        raise HmacAuthError(
            f"x-ms-date {date_header!r} is {skew:.0f}s away from server time (max {max_skew_seconds:g}s)"
        )

    body_hash_header = lowered["x-ms-content-sha256"]
    # Encode before compare_digest: it rejects non-ASCII str arguments with TypeError.
    if not hmac.compare_digest(body_hash_header.strip().encode("utf-8"), content_hash(body).encode("ascii")):
        raise HmacAuthError("x-ms-content-sha256 does not match the request body")

    # The client signs the host of the endpoint string it was given, not the Host header it sends;
    # a user endpoint with a trailing "/" (e.g. "https://host:8000/") puts that slash into the
    # signed host (§1.2 verification notes). Accept either form.
    matched = False
    for candidate_host in (host, host + "/"):
        expected = _hmac_digest(
            string_to_sign(
                method=method,
                path_and_query=path_and_query,
                date=date_header,
                host=candidate_host,
                body_hash=body_hash_header,
            ),
            access_key,
        )
        # Evaluate every candidate (no early exit) so timing does not reveal which host matched.
        matched |= hmac.compare_digest(expected, provided_signature)
    if not matched:
        raise HmacAuthError("Signature does not match")


# --------------------------------------------------------------------------------------------------
# Django middleware
# --------------------------------------------------------------------------------------------------


def _decode_target(raw: bytes) -> str:
    # Wire targets are ASCII (percent-encoded); UTF-8 covers a client that sent raw UTF-8 after
    # signing the same text, and latin-1 keeps any other bytes 1:1 rather than failing.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def raw_request_target(request: HttpRequest) -> str:
    """Return the request target (path + `?query`) exactly as received, still percent-encoded.

    Under ASGI (daphne) this is `scope["raw_path"]` plus `?` + `scope["query_string"]` when the
    latter is non-empty. Under WSGI it is `RAW_URI` (gunicorn) or `REQUEST_URI` (uWSGI), else
    Django's re-encoded `get_full_path()` (the last resort, e.g. for Django's test client, whose
    scope/environ carry no raw target).
    """
    scope: dict[str, Any] | None = getattr(request, "scope", None)
    if scope is not None:
        raw_path = scope.get("raw_path")
        if raw_path:
            target = _decode_target(raw_path)
            query = scope.get("query_string") or b""
            if query:
                target += "?" + _decode_target(query)
            return target
    meta_target = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if meta_target:
        return meta_target
    return request.get_full_path()


def _is_protected(request: HttpRequest) -> bool:
    # Use the decoded path_info the URL resolver matches on, so an encoded spelling such as
    # "/%72outing/jobs" cannot route to the API while skipping this check; leading slashes are
    # stripped for the same reason.
    return request.path_info.lstrip("/").startswith(_PROTECTED_PREFIX)


def _unauthorized(message: str) -> JsonResponse:
    # 401 is what the SDK maps to ClientAuthenticationError (§1.2). No Retry-After: retrying an
    # unauthenticated request cannot succeed, and the SDK's retry policy would honour the header.
    return JsonResponse({"error": {"code": "Unauthorized", "message": message}}, status=401)


class HmacAuthenticationMiddleware(GateMiddleware):
    """Require an ACS HMAC-SHA256 signature (spec §1.2) on every request under `/routing`.

    Other paths pass through untouched. On failure it answers
    `401 {"error": {"code": "Unauthorized", "message": <reason>}}`; on success it sets
    `request.hmac_authenticated = True` and continues. Settings used: `JOBROUTER_ACCESS_KEY`
    (base64) and `JOBROUTER_MAX_CLOCK_SKEW_SECONDS`.

    Both sync- and async-capable (`GateMiddleware`).
    """

    def check(self, request: HttpRequest) -> HttpResponse | None:
        """Return a 401 response when the request must be rejected, else None."""
        if not _is_protected(request):
            return None
        try:
            verify_signature(
                method=request.method or "",
                path_and_query=raw_request_target(request),
                # The raw Host header, not request.get_host(): that one validates ALLOWED_HOSTS and
                # may rewrite via X-Forwarded-Host, neither of which is what the client signed.
                host=request.META.get("HTTP_HOST", ""),
                headers=request.headers,
                body=request.body,
                access_key=settings.JOBROUTER_ACCESS_KEY,
                now=clock.now(),
                max_skew_seconds=float(settings.JOBROUTER_MAX_CLOCK_SKEW_SECONDS),
            )
        except HmacAuthError as exc:
            return _unauthorized(str(exc))
        request.hmac_authenticated = True  # type: ignore[attr-defined]
        return None

