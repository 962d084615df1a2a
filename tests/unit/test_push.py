"""Push notifications without sockets: RFC 8599 parameters, the APNs and FCM requests we build,
how their answers are read, provider and access tokens, and the `[push]` settings."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.push import (
    CallEvent,
    Notification,
    Outcome,
    PushConfigError,
    PushParamError,
    PushTarget,
)
from b2bua.push.apns import (
    TOKEN_RENEW_AFTER,
    ApnsCredentials,
    ProviderToken,
    apns_request,
    apns_result,
    apns_topic,
    collapse_id,
    device_token,
)
from b2bua.push.credentials import SCOPE, ServiceAccount
from b2bua.push.fcm import (
    GRANT_TYPE,
    AuthError,
    fcm_request,
    fcm_result,
    token_request,
    token_response,
)
from b2bua.push.settings import ApnsSettings, FcmSettings, PushSettings, check, check_url
from b2bua.testing.push_keys import make_apns_key, make_service_account

TOKEN = "0123456789abcdef" * 4
VOIP = "DEF123GHIJ.org.example.phone.voip"
CALL = Notification(CallEvent.INCOMING, "call-1@pbx", "0600000001", "Bruno Petit", ttl=10)
ENDED = Notification(CallEvent.ENDED, "call-1@pbx", "0600000001", "Bruno Petit",
                     reason="answered_elsewhere", ttl=10)


# -- RFC 8599 parameters -----------------------------------------------------------------------
def test_contact_without_pn_provider_is_no_push_target() -> None:
    assert PushTarget.from_uri_params({"transport": "tcp"}) is None


def test_pn_provider_alone_asks_but_gives_no_target() -> None:
    assert PushTarget.from_uri_params({"pn-provider": "apns"}) is None
    assert PushTarget.from_uri_params({"pn-provider": "apns", "pn-prid": ""}) is None


def test_contact_pn_parameters_make_a_target() -> None:
    target = PushTarget.from_uri_params(
        {"pn-provider": "APNS", "pn-prid": TOKEN, "pn-param": VOIP})
    assert target == PushTarget("apns", TOKEN, VOIP)
    assert target.short() == "apns:…" + TOKEN[-8:]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"pn-provider": "ap ns", "pn-prid": "x"}, "Malformed pn-provider"),
        ({"pn-provider": "fcm", "pn-prid": "x" * 5000}, "pn-prid Too Long"),
        ({"pn-provider": "fcm", "pn-prid": "x", "pn-param": "p" * 300}, "pn-param Too Long"),
    ],
)
def test_bad_pn_parameters_say_why(params: dict[str, str], reason: str) -> None:
    with pytest.raises(PushParamError) as info:
        PushTarget.from_uri_params(params)
    assert info.value.reason == reason


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["pn-provider", "pn-prid", "pn-param", "x"]),
                       st.one_of(st.none(), st.text(max_size=40))))
def test_pn_parameters_never_raise_anything_else(params: dict[str, str | None]) -> None:
    try:
        PushTarget.from_uri_params(params)
    except PushParamError:
        pass


# -- APNs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("param", "topic", "push_type"),
    [
        ("DEF123GHIJ.org.example.phone.voip", "org.example.phone.voip", "voip"),
        ("DEF123GHIJ.org.example.phone.voip&remote", "org.example.phone.voip", "voip"),
        ("DEF123GHIJ.org.example.phone.remote&voip", "org.example.phone.voip", "voip"),
        ("DEF123GHIJ.org.example.phone.remote", "org.example.phone", "alert"),
        ("DEF123GHIJ.org.example.phone", "org.example.phone", "alert"),
    ],
)
def test_apns_topic_from_pn_param(param: str, topic: str, push_type: str) -> None:
    parsed = apns_topic(param)
    assert (parsed.team_id, parsed.topic, parsed.push_type) == ("DEF123GHIJ", topic, push_type)


@pytest.mark.parametrize("param", ["", "DEF123GHIJ", "DEF123GHIJ.", ".org.example"])
def test_apns_pn_param_without_topic_is_refused(param: str) -> None:
    with pytest.raises(ValueError):
        apns_topic(param)


def test_device_token_for_the_push_type() -> None:
    assert device_token("AAAA", "voip") == "AAAA"
    assert device_token("AAAA:remote&BBBB:voip", "voip") == "BBBB"
    assert device_token("AAAA:remote&BBBB:voip", "alert") == "AAAA"
    assert device_token("AAAA:voip", "alert") == "AAAA"


def test_apns_voip_request() -> None:
    request = apns_request(PushTarget("apns", TOKEN, VOIP), CALL, "JWT", 1000.2, "id-1")
    headers = dict(request.headers)
    assert request.method == "POST"
    assert request.path == f"/3/device/{TOKEN}"
    assert headers["authorization"] == "bearer JWT"
    assert headers["apns-topic"] == "org.example.phone.voip"
    assert headers["apns-push-type"] == "voip"
    assert headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == "1011"  # now + ttl, rounded up
    assert headers["apns-id"] == "id-1"
    payload = json.loads(request.body)
    assert payload == {"aps": {}, "type": "call", "call_id": "call-1@pbx",
                       "caller": "0600000001", "display_name": "Bruno Petit"}


def test_apns_end_of_call_replaces_the_call_push() -> None:
    target = PushTarget("apns", TOKEN, VOIP)
    call = dict(apns_request(target, CALL, "JWT", 0, "a").headers)
    ended = apns_request(target, ENDED, "JWT", 0, "b")
    assert dict(ended.headers)["apns-collapse-id"] == call["apns-collapse-id"]
    assert len(collapse_id("x" * 1000).encode()) <= 64
    assert json.loads(ended.body)["type"] == "call_ended"
    assert json.loads(ended.body)["reason"] == "answered_elsewhere"


def test_apns_alert_request_shows_the_caller() -> None:
    request = apns_request(PushTarget("apns", TOKEN, "DEF123GHIJ.org.example.phone"), CALL,
                           "JWT", 0, "a")
    assert dict(request.headers)["apns-push-type"] == "alert"
    assert json.loads(request.body)["aps"]["alert"] == {"title": "Bruno Petit"}


@pytest.mark.parametrize("prid", ["not-hex", "", "ab" * 200])
def test_apns_request_refuses_a_token_that_cannot_be_one(prid: str) -> None:
    with pytest.raises(ValueError):
        apns_request(PushTarget("apns", prid, VOIP), CALL, "JWT", 0, "a")


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (200, b"", Outcome.DELIVERED, ""),
        (410, b'{"reason":"Unregistered","timestamp":1700000000000}', Outcome.INVALID_TOKEN, "Unregistered"),
        (400, b'{"reason":"BadDeviceToken"}', Outcome.INVALID_TOKEN, "BadDeviceToken"),
        (400, b'{"reason":"DeviceTokenNotForTopic"}', Outcome.INVALID_TOKEN, "DeviceTokenNotForTopic"),
        (400, b'{"reason":"BadTopic"}', Outcome.REJECTED, "BadTopic"),
        (403, b'{"reason":"InvalidProviderToken"}', Outcome.REJECTED, "InvalidProviderToken"),
        (429, b'{"reason":"TooManyRequests"}', Outcome.FAILED, "TooManyRequests"),
        (503, b'{"reason":"ServiceUnavailable"}', Outcome.FAILED, "ServiceUnavailable"),
        (500, b"<html>", Outcome.FAILED, "unreadable answer"),
    ],
)
def test_apns_answers(status: int, body: bytes, outcome: Outcome, reason: str) -> None:
    result = apns_result(status, {"apns-id": "id-9"}, body)
    assert (result.outcome, result.status, result.reason) == (outcome, status, reason)
    assert result.message_id == "id-9"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(100, 599), st.binary(max_size=200))
def test_apns_answer_never_raises(status: int, body: bytes) -> None:
    assert apns_result(status, {}, body).status == status


def test_provider_token_is_signed_once_and_renewed_before_an_hour(tmp_path: Path) -> None:
    key = make_apns_key(tmp_path)
    token = ProviderToken(ApnsCredentials.load(key.key_file, key.key_id, key.team_id))
    first = token.bearer(1_000_000.0)
    assert jwt.get_unverified_header(first) == {"alg": "ES256", "kid": "ABC123DEFG", "typ": "JWT"}
    claims = jwt.decode(first, key.public_key, algorithms=["ES256"])
    assert claims == {"iss": "DEF123GHIJ", "iat": 1_000_000}
    assert token.bearer(1_000_000.0 + TOKEN_RENEW_AFTER - 1) == first
    assert token.signed == 1
    second = token.bearer(1_000_000.0 + TOKEN_RENEW_AFTER)
    assert second != first and token.signed == 2
    assert TOKEN_RENEW_AFTER < 3600


def test_apns_key_errors_name_the_field(tmp_path: Path) -> None:
    key = make_apns_key(tmp_path)
    with pytest.raises(PushConfigError) as info:
        ApnsCredentials.load(tmp_path / "missing.p8", "ABC123DEFG", "DEF123GHIJ")
    assert info.value.field == "push.apns.key_file" and "No such file" in info.value.reason
    garbage = tmp_path / "garbage.p8"
    garbage.write_text("not a key")
    with pytest.raises(PushConfigError, match="not a PEM private key"):
        ApnsCredentials.load(garbage, "ABC123DEFG", "DEF123GHIJ")
    rsa_key = tmp_path / "rsa.p8"
    rsa_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(PushConfigError, match="not an EC P-256 key"):
        ApnsCredentials.load(rsa_key, "ABC123DEFG", "DEF123GHIJ")
    with pytest.raises(PushConfigError) as info:
        ApnsCredentials.load(key.key_file, "ABC", "DEF123GHIJ")
    assert info.value.field == "push.apns.key_id"
    with pytest.raises(PushConfigError) as info:
        ApnsCredentials.load(key.key_file, "ABC123DEFG", "DEF123GHI!")
    assert info.value.field == "push.apns.team_id"


# -- FCM -------------------------------------------------------------------------------------------
def test_service_account_assertion_is_the_jwt_bearer_grant(tmp_path: Path) -> None:
    made = make_service_account(tmp_path, "http://127.0.0.1:9/token")
    account = ServiceAccount.load(made.path)
    assert account.project_id == "b2bua-test"
    body = token_request(account, 2_000_000.5).decode()
    from urllib.parse import parse_qs

    form = parse_qs(body)
    assert form["grant_type"] == [GRANT_TYPE]
    assertion = form["assertion"][0]
    assert jwt.get_unverified_header(assertion)["kid"] == made.private_key_id
    claims = jwt.decode(assertion, made.public_key, algorithms=["RS256"],
                        audience="http://127.0.0.1:9/token", options={"verify_exp": False})
    assert claims == {"iss": made.client_email, "scope": SCOPE,
                      "aud": "http://127.0.0.1:9/token", "iat": 2_000_000, "exp": 2_003_600}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "not a service-account key"),
        ('{"type": "authorized_user"}', "not 'service_account'"),
        ('{"type": "service_account", "project_id": "p"}', "missing private_key_id, private_key"),
    ],
)
def test_service_account_errors(text: str, message: str) -> None:
    with pytest.raises(PushConfigError) as info:
        ServiceAccount.parse(text, "key.json")
    assert info.value.field == "push.fcm.service_account"
    assert message in info.value.reason and info.value.reason.startswith("key.json: ")


def test_service_account_with_a_bad_key_or_token_uri(tmp_path: Path) -> None:
    made = make_service_account(tmp_path, "http://127.0.0.1:9/token")
    data = json.loads(made.path.read_text())
    with pytest.raises(PushConfigError, match="not an HTTP URL"):
        ServiceAccount.parse(json.dumps({**data, "token_uri": "ftp://x"}))
    with pytest.raises(PushConfigError, match="not a PEM key"):
        ServiceAccount.parse(json.dumps({**data, "private_key": "-----BEGIN nothing"}))


def test_token_response() -> None:
    token, expires = token_response(200, b'{"access_token":"ya29.x","expires_in":3599,'
                                         b'"token_type":"Bearer"}', 100.0)
    assert (token, expires) == ("ya29.x", 3699.0)
    with pytest.raises(AuthError, match=r"400 invalid_grant Invalid JWT Signature\."):
        token_response(400, b'{"error":"invalid_grant","error_description":"Invalid JWT Signature."}', 0)
    with pytest.raises(AuthError, match="without access_token"):
        token_response(200, b'{"expires_in":3599}', 0)
    with pytest.raises(AuthError, match="answered 502"):
        token_response(502, b"<html>", 0)


def test_fcm_request_is_a_high_priority_data_message() -> None:
    request = fcm_request("my project", PushTarget("fcm", "reg-token", "123"), CALL, "ya29.x")
    assert request.path == "/v1/projects/my%20project/messages:send"
    assert dict(request.headers)["authorization"] == "Bearer ya29.x"
    message = json.loads(request.body)["message"]
    assert message == {
        "token": "reg-token",
        "data": {"type": "call", "call_id": "call-1@pbx", "caller": "0600000001",
                 "display_name": "Bruno Petit"},
        "android": {"priority": "high", "ttl": "10s"},
    }


def _google_error(status: int, code: str, message: str = "", field: str | None = None) -> bytes:
    details: list[dict[str, object]] = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    if field:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": message}]})
    return json.dumps({"error": {"code": status, "message": message, "status": "X",
                                 "details": details}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (200, b'{"name":"projects/p/messages/1"}', Outcome.DELIVERED, ""),
        (404, _google_error(404, "UNREGISTERED"), Outcome.INVALID_TOKEN, "UNREGISTERED"),
        (400, _google_error(400, "INVALID_ARGUMENT",
                            "The registration token is not a valid FCM registration token"),
         Outcome.INVALID_TOKEN, "INVALID_ARGUMENT"),
        (400, _google_error(400, "INVALID_ARGUMENT", "bad", "message.token"),
         Outcome.INVALID_TOKEN, "INVALID_ARGUMENT"),
        (400, _google_error(400, "INVALID_ARGUMENT", "Invalid value", "message.data"),
         Outcome.REJECTED, "INVALID_ARGUMENT"),
        (403, _google_error(403, "SENDER_ID_MISMATCH"), Outcome.REJECTED, "SENDER_ID_MISMATCH"),
        (401, b'{"error":{"code":401,"status":"UNAUTHENTICATED"}}', Outcome.FAILED, "UNAUTHENTICATED"),
        (429, _google_error(429, "QUOTA_EXCEEDED"), Outcome.FAILED, "QUOTA_EXCEEDED"),
        (503, _google_error(503, "UNAVAILABLE"), Outcome.FAILED, "UNAVAILABLE"),
        (502, b"<html>bad gateway</html>", Outcome.FAILED, "error"),
    ],
)
def test_fcm_answers(status: int, body: bytes, outcome: Outcome, reason: str) -> None:
    result = fcm_result(status, body)
    assert (result.outcome, result.status, result.reason) == (outcome, status, reason)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(100, 599), st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["error", "details", "errorCode", "fieldViolations", "field", "name"]),
        inner, max_size=3),
    max_leaves=10).map(lambda v: json.dumps(v).encode())))
def test_fcm_answer_never_raises(status: int, body: bytes) -> None:
    assert fcm_result(status, body).status == status


# -- settings --------------------------------------------------------------------------------------
def test_settings_checks(tmp_path: Path) -> None:
    key = make_apns_key(tmp_path)
    account = make_service_account(tmp_path, "https://oauth2.example/token")
    good = PushSettings(
        wait=10,
        apns=ApnsSettings(key.key_file.name, key.key_id, key.team_id),
        fcm=FcmSettings(account.path.name),
    )
    check(good, tmp_path)
    assert good.providers == ("apns", "fcm")
    assert PushSettings().providers == ()
    with pytest.raises(PushConfigError) as info:
        check(PushSettings(wait=0), tmp_path)
    assert info.value.field == "push.wait"
    with pytest.raises(PushConfigError) as info:
        check(PushSettings(apns=ApnsSettings("nope.p8", key.key_id, key.team_id)), tmp_path)
    assert info.value.field == "push.apns.key_file"
    with pytest.raises(PushConfigError) as info:
        check(PushSettings(fcm=FcmSettings(account.path.name, url="fcm.googleapis.com")), tmp_path)
    assert info.value.field == "push.fcm.url"
    with pytest.raises(PushConfigError) as info:
        check(PushSettings(fcm=FcmSettings(account.path.name, ca_file="none.pem")), tmp_path)
    assert info.value.field == "push.fcm.ca_file"


@pytest.mark.parametrize("url", ["https://api.push.apple.com", "http://127.0.0.1:8443/"])
def test_good_urls(url: str) -> None:
    assert check_url("push.apns.url", url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["api.push.apple.com", "ftp://x", "https://", "https://h/?a=1",
                                 "https://h:99999"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(PushConfigError):
        check_url("push.apns.url", url)
