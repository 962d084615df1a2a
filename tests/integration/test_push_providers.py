"""The APNs and FCM clients against local stand-ins that speak the real protocols over loopback:
HTTP/2 with TLS (and cleartext prior knowledge) for APNs, the OAuth2 JWT bearer grant and FCM v1
for FCM; their error answers; a slow and a dead provider."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from b2bua.push import CallEvent, Notification, Outcome, PushTarget
from b2bua.push.apns import TOKEN_RENEW_AFTER, ApnsClient, ApnsCredentials
from b2bua.push.fcm import FcmClient, ServiceAccount
from b2bua.push.service import PushReport, PushService
from b2bua.push.settings import ApnsSettings, FcmSettings, PushSettings, build_service
from b2bua.testing.net import free_port
from b2bua.testing.push_apns import ApnsStandIn
from b2bua.testing.push_fcm import FcmStandIn
from b2bua.testing.push_keys import ApnsKey, make_apns_key, make_certificate, make_service_account

TOPIC = "org.example.phone.voip"
VOIP = f"DEF123GHIJ.{TOPIC}"
TOKEN = "0a1b2c3d4e5f6789" * 4
OTHER = "f" * 64
CALL = Notification(CallEvent.INCOMING, "call-1@pbx", "0600000001", "Bruno Petit", ttl=10)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def apns_key(tmp_path: Path) -> ApnsKey:
    return make_apns_key(tmp_path)


@pytest.fixture
async def apns_tls(tmp_path: Path, apns_key: ApnsKey) -> AsyncIterator[tuple[ApnsStandIn, ssl.SSLContext]]:
    cert = make_certificate(tmp_path)
    stand_in = ApnsStandIn(apns_key, certificate=cert)
    stand_in.add_device(TOKEN, TOPIC)
    await stand_in.start()
    yield stand_in, ssl.create_default_context(cafile=str(cert.cert_file))
    await stand_in.stop()


@pytest.fixture
async def apns(apns_key: ApnsKey) -> AsyncIterator[ApnsStandIn]:
    stand_in = ApnsStandIn(apns_key)
    stand_in.add_device(TOKEN, TOPIC)
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def fcm(tmp_path: Path) -> AsyncIterator[FcmStandIn]:
    stand_in = FcmStandIn()
    await stand_in.start()
    stand_in.trust(make_service_account(tmp_path, stand_in.token_uri))
    stand_in.add_device("reg-token-1")
    yield stand_in
    await stand_in.stop()


def apns_client(key: ApnsKey, url: str, **kwargs: object) -> ApnsClient:
    return ApnsClient(ApnsCredentials.load(key.key_file, key.key_id, key.team_id), url=url,
                      **kwargs)  # type: ignore[arg-type]


def fcm_client(stand_in: FcmStandIn, **kwargs: object) -> FcmClient:
    assert stand_in.account is not None
    return FcmClient(ServiceAccount.load(stand_in.account.path), url=stand_in.url,
                     **kwargs)  # type: ignore[arg-type]


# -- APNs ------------------------------------------------------------------------------------------
async def test_apns_voip_push_over_http2_and_tls(
    apns_tls: tuple[ApnsStandIn, ssl.SSLContext], apns_key: ApnsKey
) -> None:
    stand_in, ca = apns_tls
    client = apns_client(apns_key, stand_in.url, verify=ca)
    try:
        before = time.time()
        result = await client.send(PushTarget("apns", TOKEN, VOIP), CALL)
    finally:
        await client.aclose()
    assert result.outcome is Outcome.DELIVERED and result.status == 200
    [push] = stand_in.received
    assert push.http_version == "2"
    assert result.message_id == push.apns_id
    assert (push.token, push.topic, push.push_type, push.priority) == (TOKEN, TOPIC, "voip", 10)
    assert before + 10 <= push.expiration <= time.time() + 11
    assert push.payload["call_id"] == "call-1@pbx"
    assert push.payload["caller"] == "0600000001"
    assert push.payload["display_name"] == "Bruno Petit"


async def test_apns_refuses_a_client_that_does_not_trust_its_certificate(
    apns_tls: tuple[ApnsStandIn, ssl.SSLContext], apns_key: ApnsKey
) -> None:
    stand_in, _ = apns_tls
    client = apns_client(apns_key, stand_in.url)  # the system store: a self-signed cert fails
    try:
        result = await client.send(PushTarget("apns", TOKEN, VOIP), CALL)
    finally:
        await client.aclose()
    assert result.outcome is Outcome.FAILED and "ConnectError" in result.reason
    assert stand_in.received == []


async def test_apns_provider_token_is_reused_then_renewed(apns: ApnsStandIn, apns_key: ApnsKey) -> None:
    clock = Clock(time.time())
    apns.clock = clock
    client = apns_client(apns_key, apns.url, clock=clock)
    try:
        results = await asyncio.gather(
            *(client.send(PushTarget("apns", TOKEN, VOIP), CALL) for _ in range(20)))
        assert all(r.delivered for r in results)
        assert len(apns.provider_tokens) == 1 and client.tokens_signed == 1
        clock.now += TOKEN_RENEW_AFTER + 1
        assert (await client.send(PushTarget("apns", TOKEN, VOIP), CALL)).delivered
        assert len(apns.provider_tokens) == 2 and client.tokens_signed == 2
    finally:
        await client.aclose()


async def test_apns_expired_provider_token_is_signed_again(apns: ApnsStandIn, apns_key: ApnsKey) -> None:
    ours = Clock(time.time())
    theirs = Clock(ours.now)
    apns.clock = theirs
    client = apns_client(apns_key, apns.url, clock=ours)
    try:
        assert (await client.send(PushTarget("apns", TOKEN, VOIP), CALL)).delivered
        # Our clock says 40 minutes went by, Apple's says 61: the cached token is too old there.
        ours.now += 40 * 60
        theirs.now += 61 * 60
        result = await client.send(PushTarget("apns", TOKEN, VOIP), CALL)
    finally:
        await client.aclose()
    assert result.delivered
    assert [a for a in apns.answers if a[0] != 200] == [(403, "ExpiredProviderToken")]
    assert client.tokens_signed == 2


async def test_apns_error_answers(apns: ApnsStandIn, apns_key: ApnsKey) -> None:
    gone = "0" * 64
    apns.add_device(gone, TOPIC)
    apns.unregister(gone)
    apns.add_device(OTHER, "org.other.app.voip")
    client = apns_client(apns_key, apns.url)
    try:
        unregistered = await client.send(PushTarget("apns", gone, VOIP), CALL)
        unknown = await client.send(PushTarget("apns", "1" * 64, VOIP), CALL)
        wrong_topic = await client.send(PushTarget("apns", OTHER, VOIP), CALL)
        apns.fail_with = (503, "ServiceUnavailable")
        down = await client.send(PushTarget("apns", TOKEN, VOIP), CALL)
    finally:
        await client.aclose()
    assert (unregistered.outcome, unregistered.status, unregistered.reason) == (
        Outcome.INVALID_TOKEN, 410, "Unregistered")
    assert (unknown.outcome, unknown.status, unknown.reason) == (
        Outcome.INVALID_TOKEN, 400, "BadDeviceToken")
    assert (wrong_topic.outcome, wrong_topic.reason) == (Outcome.INVALID_TOKEN, "DeviceTokenNotForTopic")
    assert (down.outcome, down.status, down.reason) == (Outcome.FAILED, 503, "ServiceUnavailable")


async def test_apns_with_another_teams_key_is_refused(apns: ApnsStandIn, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_apns_key(other)  # same key id and team, another key
    client = apns_client(stranger, apns.url)
    try:
        result = await client.send(PushTarget("apns", TOKEN, VOIP), CALL)
    finally:
        await client.aclose()
    assert (result.outcome, result.status, result.reason) == (
        Outcome.REJECTED, 403, "InvalidProviderToken")


# -- FCM -------------------------------------------------------------------------------------------
async def test_fcm_data_message_with_a_cached_access_token(fcm: FcmStandIn) -> None:
    client = fcm_client(fcm)
    try:
        results = await asyncio.gather(
            *(client.send(PushTarget("fcm", "reg-token-1", "123"), CALL) for _ in range(20)))
    finally:
        await client.aclose()
    assert all(r.delivered for r in results)
    assert results[0].message_id is not None and results[0].message_id.startswith(
        "projects/b2bua-test/messages/")
    assert fcm.token_requests == 1  # twenty concurrent pushes, one grant
    message = fcm.received[0]
    assert message.android == {"priority": "high", "ttl": "10s"}
    assert message.data == {"type": "call", "call_id": "call-1@pbx", "caller": "0600000001",
                            "display_name": "Bruno Petit"}


async def test_fcm_access_token_renewed_before_it_expires(fcm: FcmStandIn) -> None:
    clock = Clock(time.time())
    fcm.clock = clock
    client = fcm_client(fcm, clock=clock)
    try:
        assert (await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)).delivered
        clock.now += 3000
        assert (await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)).delivered
        assert fcm.token_requests == 1
        clock.now += 3600 - 3000 - 30  # within the last minute of its life
        assert (await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)).delivered
        assert fcm.token_requests == 2
    finally:
        await client.aclose()


async def test_fcm_revoked_access_token_is_fetched_again(fcm: FcmStandIn) -> None:
    client = fcm_client(fcm)
    try:
        assert (await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)).delivered
        fcm.revoke_tokens()
        result = await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)
    finally:
        await client.aclose()
    assert result.delivered
    assert fcm.token_requests == 2
    assert (401, "UNAUTHENTICATED") in fcm.answers


async def test_fcm_error_answers(fcm: FcmStandIn, tmp_path: Path) -> None:
    fcm.add_device("gone")
    fcm.unregister("gone")
    client = fcm_client(fcm)
    try:
        unregistered = await client.send(PushTarget("fcm", "gone", ""), CALL)
        invalid = await client.send(PushTarget("fcm", "never-issued", ""), CALL)
        fcm.fail_with = (503, "UNAVAILABLE")
        down = await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)
    finally:
        await client.aclose()
    assert (unregistered.outcome, unregistered.status, unregistered.reason) == (
        Outcome.INVALID_TOKEN, 404, "UNREGISTERED")
    assert (invalid.outcome, invalid.status, invalid.reason) == (
        Outcome.INVALID_TOKEN, 400, "INVALID_ARGUMENT")
    assert (down.outcome, down.status, down.reason) == (Outcome.FAILED, 503, "UNAVAILABLE")


async def test_fcm_grant_refused_for_an_unknown_key(fcm: FcmStandIn, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_service_account(other, fcm.token_uri)
    client = FcmClient(ServiceAccount.load(stranger.path), url=fcm.url)
    try:
        result = await client.send(PushTarget("fcm", "reg-token-1", ""), CALL)
    finally:
        await client.aclose()
    assert result.outcome is Outcome.FAILED
    assert result.reason.startswith("token endpoint answered 400 invalid_grant")
    assert fcm.received == []


# -- the service: a slow or dead provider delays nobody -----------------------------------------------
async def _black_hole() -> tuple[asyncio.Server, int]:
    """A TCP server that accepts connections and never answers."""
    port = free_port(socket.SOCK_STREAM)
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(swallow, "127.0.0.1", port)
    return server, port


async def test_slow_apns_delays_neither_fcm_nor_the_caller(
    apns: ApnsStandIn, apns_key: ApnsKey, fcm: FcmStandIn
) -> None:
    apns.delay = 3.0
    service = PushService([apns_client(apns_key, apns.url), fcm_client(fcm)], timeout=0.5)
    reports: list[PushReport] = []
    try:
        started = time.monotonic()
        slow = service.push(PushTarget("apns", TOKEN, VOIP), CALL, reports.append)
        fast = service.push(PushTarget("fcm", "reg-token-1", ""), CALL, reports.append)
        handed_over = time.monotonic() - started
        fast_report = await fast
        fast_done = time.monotonic() - started
        slow_report = await slow
        slow_done = time.monotonic() - started
    finally:
        await service.aclose()
    assert handed_over < 0.05  # push() does not wait for anything
    assert fast_report.result.delivered and fast_done < 0.45
    assert slow_report.result.outcome is Outcome.TIMEOUT
    assert 0.45 <= slow_done < 1.5
    assert [r.target.provider for r in reports] == ["fcm", "apns"]
    assert service.counters["push_results_total:apns:timeout"] == 1
    assert service.counters["push_results_total:fcm:delivered"] == 1
    assert not service.healthy("apns") and service.healthy("fcm")


async def test_dead_providers(apns_key: ApnsKey, fcm: FcmStandIn) -> None:
    hole, hole_port = await _black_hole()
    refused_port = free_port(socket.SOCK_STREAM)
    refused = apns_client(apns_key, f"http://127.0.0.1:{refused_port}")
    assert fcm.account is not None
    silent = FcmClient(ServiceAccount.load(fcm.account.path), url=f"http://127.0.0.1:{hole_port}")
    try:
        service = PushService([refused, silent], timeout=0.5)
        started = time.monotonic()
        # The token endpoint (the stand-in) answers, the FCM endpoint never does.
        a = await service.push(PushTarget("apns", TOKEN, VOIP), CALL)
        refused_after = time.monotonic() - started
        f = await service.push(PushTarget("fcm", "reg-token-1", ""), CALL)
        silent_after = time.monotonic() - started - refused_after
        await service.aclose()
    finally:
        hole.close()
    assert a.result.outcome is Outcome.FAILED and "ConnectError" in a.result.reason
    assert refused_after < 0.5
    assert f.result.outcome is Outcome.TIMEOUT and 0.45 <= silent_after < 1.5


async def test_pushes_in_flight_are_bounded(apns: ApnsStandIn, apns_key: ApnsKey) -> None:
    apns.delay = 0.3
    service = PushService([apns_client(apns_key, apns.url)], timeout=2, max_in_flight=2)
    try:
        tasks = [service.push(PushTarget("apns", TOKEN, VOIP), CALL) for _ in range(3)]
        reports = await asyncio.gather(*tasks)
    finally:
        await service.aclose()
    assert [r.result.outcome for r in reports] == [Outcome.DELIVERED, Outcome.DELIVERED, Outcome.FAILED]
    assert reports[2].result.reason == "too many pushes in flight"
    assert reports[2].latency < 0.1
    assert service.last(PushTarget("apns", TOKEN, VOIP)) is not None


async def test_unconfigured_provider_is_rejected_at_once(apns: ApnsStandIn, apns_key: ApnsKey) -> None:
    service = PushService([apns_client(apns_key, apns.url)])
    try:
        report = await service.push(PushTarget("fcm", "x", ""), CALL)
    finally:
        await service.aclose()
    assert report.result.outcome is Outcome.REJECTED
    assert "not configured" in report.result.reason
    assert service.providers == ("apns",)


async def test_service_built_from_settings(
    tmp_path: Path, apns: ApnsStandIn, apns_key: ApnsKey, fcm: FcmStandIn
) -> None:
    assert fcm.account is not None
    settings = PushSettings(
        wait=10,
        apns=ApnsSettings(apns_key.key_file.name, apns_key.key_id, apns_key.team_id, apns.url),
        fcm=FcmSettings(fcm.account.path.name, fcm.url),
    )
    service = build_service(settings, tmp_path)
    assert service is not None
    try:
        assert service.providers == ("apns", "fcm")
        reports = await asyncio.gather(
            service.push(PushTarget("apns", TOKEN, VOIP), CALL),
            service.push(PushTarget("fcm", "reg-token-1", ""), CALL),
        )
    finally:
        await service.aclose()
    assert [r.result.outcome for r in reports] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert build_service(PushSettings(), tmp_path) is None


async def test_apns_restarted_between_pushes(apns_key: ApnsKey) -> None:
    """Apple closes idle connections: the next push opens a new one."""
    first = ApnsStandIn(apns_key)
    first.add_device(TOKEN, TOPIC)
    await first.start()
    client = apns_client(apns_key, first.url)
    try:
        assert (await client.send(PushTarget("apns", TOKEN, VOIP), CALL)).delivered
        await first.stop()
        down = await client.send(PushTarget("apns", TOKEN, VOIP), CALL)
        assert down.outcome is Outcome.FAILED
        second = ApnsStandIn(apns_key)
        second.port = first.port
        second.add_device(TOKEN, TOPIC)
        await second.start()
        try:
            assert (await client.send(PushTarget("apns", TOKEN, VOIP), CALL)).delivered
        finally:
            await second.stop()
    finally:
        await client.aclose()


async def test_waker_pushes_through_the_service_and_reports_to_the_registrar(
    apns: ApnsStandIn, apns_key: ApnsKey
) -> None:
    from b2bua.push.waker import Waker, push_sender
    from tests.unit.test_push_waker import T0, setup

    reg, _, (ios, gone), _ = setup(["apns", "apns"])
    apns.add_device(ios.push.prid, TOPIC)
    apns.add_device(gone.push.prid, TOPIC)
    apns.unregister(gone.push.prid)
    service = PushService([apns_client(apns_key, apns.url)])
    waker = Waker(reg, lambda command: None, wait=10)
    waker.send = push_sender(service, waker)
    try:
        started = time.monotonic()
        assert waker.call_ringing("c1", "1001", lambda b: f"branch-{b.key}@pbx", "0600000001",
                                  "Bruno", T0 + 1) == 2
        handed_over = time.monotonic() - started
        [received] = await apns.wait_for_pushes(1)
        while service.in_flight:
            await asyncio.sleep(0.01)
    finally:
        await service.aclose()
    assert handed_over < 0.1  # the INVITE's handling is not held up by the pushes
    assert received.token == ios.push.prid
    assert received.payload["call_id"] == f"branch-{ios_binding_key(reg, ios.push.prid)}@pbx"
    by_token = {b.push.prid if b.push else None: b for b in reg.bindings("1001")}
    assert by_token[ios.push.prid].last_push_result == "delivered"
    assert None in by_token and by_token[None].last_push_result == "invalid_token (410 Unregistered)"


def ios_binding_key(reg: object, prid: str) -> str:
    from b2bua.registrar import Registrar

    assert isinstance(reg, Registrar)
    return next(b.key for b in reg.bindings("1001") if b.push is not None and b.push.prid == prid)
