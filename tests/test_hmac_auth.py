"""Pure-function tests for routing.api.auth (HMAC-SHA256, ACS Job Router 2023-11-01, spec §1.2).

No Django machinery is used; run with
    python -m pytest -p no:django tests/test_hmac_auth.py -q
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from azure.communication.jobrouter._shared.policy import HMACCredentialsPolicy
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from routing.api.auth import (
    HmacAuthError,
    compute_hmac,
    content_hash,
    sign_request,
    string_to_sign,
    verify_signature,
)

KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"x" * 32).decode()
HOST = "127.0.0.1:8000"
SKEW = 15 * 60
NOW = datetime(2026, 11, 21, 4, 22, 8, tzinfo=timezone.utc)
# An id exercising every escape the generated client emits in path segments (space, '/', ':').
ODD_ID = "a b/c:d"
ODD_PATH = "/routing/jobs/a%20b%2Fc%3Ad?api-version=2023-11-01"
BODY = json.dumps({"channelId": "voice", "queueId": "q 1", "priority": 1}).encode()

# Spec §1.2 test vectors (from the SDK's tests/test_hmac.py).
VECTOR_KEY = "pw=="
VECTOR_HOST = "contoso.communicationservices.azure.com"
VECTOR_DATE = "Wed, 13 Apr 2022 18:09:12 GMT"
VECTOR_DATETIME = datetime(2022, 4, 13, 18, 9, 12, tzinfo=timezone.utc)
EMPTY_HASH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def _verify(
    *,
    headers: dict[str, str],
    method: str = "PUT",
    path: str = ODD_PATH,
    host: str = HOST,
    body: bytes = BODY,
    key: str = KEY,
    now: datetime = NOW,
) -> None:
    verify_signature(
        method=method,
        path_and_query=path,
        host=host,
        headers=headers,
        body=body,
        access_key=key,
        now=now,
        max_skew_seconds=SKEW,
    )


def _signed(**overrides: object) -> dict[str, str]:
    args: dict[str, object] = dict(method="PUT", path_and_query=ODD_PATH, host=HOST, body=BODY, access_key=KEY, date=NOW)
    args.update(overrides)
    return sign_request(**args)  # type: ignore[arg-type]


def _auth(signature: str, signed_headers: str = "x-ms-date;host;x-ms-content-sha256") -> str:
    return f"HMAC-SHA256 SignedHeaders={signed_headers}&Signature={signature}"


# ---------------------------------------------------------------------------------------------
# (a) Spec vectors
# ---------------------------------------------------------------------------------------------


def test_vector_hmac_of_banana() -> None:
    assert compute_hmac("banana", VECTOR_KEY) == "88EC05aAS9iXnaimtNO78JLjiPtfWryQB/5QYEzEsu8="


def test_vector_empty_body_hash() -> None:
    assert content_hash(b"") == EMPTY_HASH


@pytest.mark.parametrize(
    ("path", "signature"),
    [
        ("/", "88MDmJhUR3m5QhFxb8ztShsSwlGrg7g/6XPnWf7QEO4="),
        ("/testPath?testQuery=yes", "il99+rd6V5O136roX/zVePCNle78HmvC4B7tu9zRH3I="),
    ],
)
def test_vector_signatures(path: str, signature: str) -> None:
    sts = string_to_sign(method="get", path_and_query=path, date=VECTOR_DATE, host=VECTOR_HOST, body_hash=EMPTY_HASH)
    assert compute_hmac(sts, VECTOR_KEY) == signature

    # sign_request renders the date in the client's exact RFC 1123 form and yields the same signature.
    headers = sign_request(
        method="GET", path_and_query=path, host=VECTOR_HOST, body=b"", access_key=VECTOR_KEY, date=VECTOR_DATETIME
    )
    assert headers == {
        "x-ms-date": VECTOR_DATE,
        "x-ms-content-sha256": EMPTY_HASH,
        "Authorization": _auth(signature),
    }

    # And the verifier accepts it.
    verify_signature(
        method="GET",
        path_and_query=path,
        host=VECTOR_HOST,
        headers=headers,
        body=b"",
        access_key=VECTOR_KEY,
        now=VECTOR_DATETIME,
        max_skew_seconds=SKEW,
    )


# ---------------------------------------------------------------------------------------------
# (b) Requests signed by the real SDK
# ---------------------------------------------------------------------------------------------


def _sdk_policy_sign(endpoint: str, method: str, url: str, body: str | None) -> HttpRequest:
    request = HttpRequest(method, url, content=body, headers={"Content-Type": "application/json"})
    HMACCredentialsPolicy(endpoint, KEY).on_request(PipelineRequest(request, PipelineContext(None)))
    return request


def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def test_sdk_policy_signature_with_escaped_id_verifies() -> None:
    body = json.dumps({"channelId": "voice", "labels": {"x": "é"}})
    request = _sdk_policy_sign(f"http://{HOST}", "PUT", f"http://{HOST}{ODD_PATH}", body)
    assert _target(request.url) == ODD_PATH  # escapes survive, so the wire target is what was signed
    verify_signature(
        method="PUT",
        path_and_query=ODD_PATH,
        host=HOST,
        headers=dict(request.headers),
        body=body.encode("utf-8"),
        access_key=KEY,
        now=datetime.now(timezone.utc),
        max_skew_seconds=SKEW,
    )


def test_sdk_policy_signature_without_body_verifies() -> None:
    request = _sdk_policy_sign(f"http://{HOST}", "GET", f"http://{HOST}{ODD_PATH}", None)
    verify_signature(
        method="GET",
        path_and_query=ODD_PATH,
        host=HOST,
        headers=dict(request.headers),
        body=b"",
        access_key=KEY,
        now=datetime.now(timezone.utc),
        max_skew_seconds=SKEW,
    )


class _Captured(Exception):
    """Raised by the capturing transport to stop the pipeline once the request is signed."""


def _capture_client_request(call: str, endpoint: str = f"http://{HOST}") -> HttpRequest:
    """Run one real JobRouterAdministrationClient call through a transport that records the request."""
    from azure.communication.jobrouter import JobRouterAdministrationClient
    from azure.communication.jobrouter.models import DistributionPolicy, LongestIdleMode
    from azure.core.credentials import AzureKeyCredential
    from azure.core.pipeline.transport import HttpTransport

    captured: list[HttpRequest] = []

    class CapturingTransport(HttpTransport):
        def __enter__(self) -> "CapturingTransport":
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def send(self, request, **kwargs):  # type: ignore[no-untyped-def, override]
            captured.append(request)
            raise _Captured  # not an AzureError, so the retry policy does not retry it

    client = JobRouterAdministrationClient(endpoint, AzureKeyCredential(KEY), transport=CapturingTransport())
    with pytest.raises(_Captured):
        if call == "upsert":
            client.upsert_distribution_policy(
                ODD_ID, DistributionPolicy(offer_expires_after_seconds=10, mode=LongestIdleMode(), name="é")
            )
        else:
            client.get_distribution_policy(ODD_ID)
    return captured[0]


@pytest.mark.parametrize("call", ["upsert", "get"])
def test_real_client_request_verifies(call: str) -> None:
    request = _capture_client_request(call)
    target = _target(request.url)
    assert target == "/routing/distributionPolicies/a%20b%2Fc%3Ad?api-version=2023-11-01"
    content = request.content
    body = content.encode("utf-8") if isinstance(content, str) else (content or b"")
    verify_signature(
        method=request.method,
        path_and_query=target,
        host=HOST,
        headers=dict(request.headers),
        body=body,
        access_key=KEY,
        now=datetime.now(timezone.utc),
        max_skew_seconds=SKEW,
    )
    # The same request fails once its id is decoded: verification uses the raw target only.
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        verify_signature(
            method=request.method,
            path_and_query="/routing/distributionPolicies/a b/c:d?api-version=2023-11-01",
            host=HOST,
            headers=dict(request.headers),
            body=body,
            access_key=KEY,
            now=datetime.now(timezone.utc),
            max_skew_seconds=SKEW,
        )


# ---------------------------------------------------------------------------------------------
# Accepted variations
# ---------------------------------------------------------------------------------------------


def test_own_signature_verifies() -> None:
    _verify(headers=_signed())


def test_header_lookup_is_case_insensitive() -> None:
    headers = {name.upper(): value for name, value in _signed().items()}
    _verify(headers=headers)


def test_lowercase_method_is_signed_upper() -> None:
    _verify(headers=_signed(method="put"), method="PUT")


@pytest.mark.parametrize("offset", [timedelta(minutes=-14), timedelta(minutes=14), timedelta(0)])
def test_date_within_skew_accepted(offset: timedelta) -> None:
    _verify(headers=_signed(date=NOW + offset))


def test_naive_now_is_taken_as_utc() -> None:
    _verify(headers=_signed(), now=NOW.replace(tzinfo=None))


# ---------------------------------------------------------------------------------------------
# (c) Failures
# ---------------------------------------------------------------------------------------------


def test_wrong_key_rejected() -> None:
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        _verify(headers=_signed(access_key=OTHER_KEY))


def test_tampered_body_rejected() -> None:
    with pytest.raises(HmacAuthError, match="x-ms-content-sha256"):
        _verify(headers=_signed(), body=BODY.replace(b"voice", b"chat!"))


def test_tampered_body_with_recomputed_hash_rejected() -> None:
    tampered = BODY.replace(b"voice", b"chat!")
    headers = _signed()
    headers["x-ms-content-sha256"] = content_hash(tampered)
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        _verify(headers=headers, body=tampered)


@pytest.mark.parametrize(
    "path",
    [
        "/routing/jobs/other?api-version=2023-11-01",
        "/routing/jobs/a%20b%2Fc%3Ad?api-version=2024-01-01",
        "/routing/jobs/a%20b%2Fc%3Ad",
        "/routing/jobs/a b/c:d?api-version=2023-11-01",  # decoded form of the signed target
    ],
)
def test_tampered_path_rejected(path: str) -> None:
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        _verify(headers=_signed(), path=path)


def test_tampered_method_rejected() -> None:
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        _verify(headers=_signed(), method="DELETE")


def test_other_host_rejected() -> None:
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        _verify(headers=_signed(), host="127.0.0.1:9000")


@pytest.mark.parametrize("offset", [timedelta(minutes=-16), timedelta(minutes=16)])
def test_stale_or_future_date_rejected(offset: timedelta) -> None:
    with pytest.raises(HmacAuthError, match="x-ms-date .* away from server time"):
        _verify(headers=_signed(date=NOW + offset))


@pytest.mark.parametrize("date", ["yesterday", "", "2026-11-21T04:22:08Z", "Sat, 99 Nov 2026 04:22:08 GMT"])
def test_unparsable_date_rejected(date: str) -> None:
    headers = _signed()
    headers["x-ms-date"] = date
    with pytest.raises(HmacAuthError, match="x-ms-date"):
        _verify(headers=headers)


def test_date_altered_after_signing_rejected() -> None:
    headers = _signed()
    headers["x-ms-date"] = "Sat, 21 Nov 2026 04:22:09 GMT"
    with pytest.raises(HmacAuthError, match="Signature does not match"):
        _verify(headers=headers)


@pytest.mark.parametrize("missing", ["Authorization", "x-ms-date", "x-ms-content-sha256"])
def test_missing_header_rejected(missing: str) -> None:
    headers = _signed()
    del headers[missing]
    with pytest.raises(HmacAuthError, match=f"(?i)missing {missing}"):
        _verify(headers=headers)


def test_missing_host_rejected() -> None:
    with pytest.raises(HmacAuthError, match="(?i)missing host"):
        _verify(headers=_signed(), host="")


def test_no_headers_at_all_rejected() -> None:
    with pytest.raises(HmacAuthError, match="(?i)missing"):
        _verify(headers={})


_GOOD_SIG = "A" * 43 + "="  # 32 zero bytes, valid base64 of the right length


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (f"Bearer {_GOOD_SIG}", "scheme"),
        (f"SharedKey SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={_GOOD_SIG}", "scheme"),
        ("HMAC-SHA256", "malformed"),
        (f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256;Signature={_GOOD_SIG}", "lacks Signature"),
        (f"HMAC-SHA256 Signature={_GOOD_SIG}", "lacks SignedHeaders"),
        ("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256", "lacks Signature"),
        (f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={_GOOD_SIG}&Signature=x", "repeats"),
        (f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&&Signature={_GOOD_SIG}", "malformed"),
        (_auth(_GOOD_SIG, "host;x-ms-date;x-ms-content-sha256"), "SignedHeaders must be"),
        (_auth(_GOOD_SIG, "x-ms-date;host"), "SignedHeaders must be"),
        (_auth(_GOOD_SIG, "x-ms-date;host;x-ms-content-sha256;content-type"), "SignedHeaders must be"),
        (_auth("not*base64!"), "not valid base64"),
        (_auth(""), "not valid base64|wrong length"),
        (_auth("AAAA"), "wrong length"),
    ],
)
def test_bad_authorization_format_rejected(authorization: str, reason: str) -> None:
    headers = _signed()
    headers["Authorization"] = authorization
    with pytest.raises(HmacAuthError, match=reason):
        _verify(headers=headers)


def test_authorization_parse_is_tolerant_of_case_and_spacing() -> None:
    headers = _signed()
    signature = headers["Authorization"].rsplit("Signature=", 1)[1]
    headers["Authorization"] = f"hmac-sha256  signedheaders=X-MS-Date;Host;X-MS-Content-SHA256 & signature={signature}"
    _verify(headers=headers)


def test_error_message_never_leaks_expected_signature() -> None:
    good = _signed()["Authorization"].rsplit("Signature=", 1)[1]
    headers = _signed(access_key=OTHER_KEY)
    with pytest.raises(HmacAuthError) as excinfo:
        _verify(headers=headers)
    assert good not in str(excinfo.value)


# ---------------------------------------------------------------------------------------------
# (d) Trailing-slash host leniency
# ---------------------------------------------------------------------------------------------


def test_trailing_slash_signed_host_accepted() -> None:
    # What the client signs when built with endpoint "http://127.0.0.1:8000/": Host header has no slash.
    _verify(headers=_signed(host=HOST + "/"), host=HOST)


def test_real_sdk_trailing_slash_endpoint_accepted() -> None:
    request = _sdk_policy_sign(f"http://{HOST}/", "GET", f"http://{HOST}{ODD_PATH}", None)
    verify_signature(
        method="GET",
        path_and_query=ODD_PATH,
        host=HOST,
        headers=dict(request.headers),
        body=b"",
        access_key=KEY,
        now=datetime.now(timezone.utc),
        max_skew_seconds=SKEW,
    )


def test_real_client_trailing_slash_endpoint_accepted() -> None:
    request = _capture_client_request("get", endpoint=f"http://{HOST}/")
    verify_signature(
        method="GET",
        path_and_query=_target(request.url),
        host=HOST,
        headers=dict(request.headers),
        body=b"",
        access_key=KEY,
        now=datetime.now(timezone.utc),
        max_skew_seconds=SKEW,
    )


def test_other_host_suffixes_rejected() -> None:
    for signed_host in (HOST + "//", HOST + "/prefix", "127.0.0.1"):
        with pytest.raises(HmacAuthError, match="Signature does not match"):
            _verify(headers=_signed(host=signed_host), host=HOST)
