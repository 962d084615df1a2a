"""`[push]` settings and the push service they describe.

```toml
[push]
wait = 10                                      # seconds a call waits for a woken device

[push.fcm]
service_account = "fcm-service-account.json"   # Google key file: project_id, client_email, private_key, token_uri
url = "https://fcm.googleapis.com"             # http:// allowed, for a local stand-in

[push.apns]
key_file = "AuthKey_ABC123DEFG.p8"
key_id = "ABC123DEFG"
team_id = "DEF123GHIJ"
url = "https://api.push.apple.com"             # or the sandbox; http:// allowed for a stand-in
```

`ca_file` (either provider, optional) verifies the provider's certificate against that CA instead
of the system store. File names are relative to the configuration file. Errors are
`PushConfigError(field, reason)`; the configuration loader adds FILE:LINE.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.push import apns, fcm
from b2bua.push.credentials import ApnsCredentials, ServiceAccount, check_url
from b2bua.push.model import APNS, FCM, PushConfigError
from b2bua.push.service import PushClient, PushService

DEFAULT_WAIT = 10.0
MAX_WAIT = 120.0


@dataclass(frozen=True, slots=True)
class ApnsSettings:
    key_file: str
    key_id: str
    team_id: str
    url: str = apns.PRODUCTION_URL
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class FcmSettings:
    service_account: str
    url: str = fcm.DEFAULT_URL
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class PushSettings:
    wait: float = DEFAULT_WAIT
    apns: ApnsSettings | None = None
    fcm: FcmSettings | None = None
    timeout: float = 5.0  # one push, connection and provider token included

    @property
    def providers(self) -> tuple[str, ...]:
        out: list[str] = []
        if self.apns is not None:
            out.append(APNS)
        if self.fcm is not None:
            out.append(FCM)
        return tuple(out)

    @classmethod
    def from_config(cls, push: Any) -> PushSettings:
        """From a configuration object with `wait`, `apns` and `fcm` attributes (or None)."""
        if push is None:
            return cls()
        a = getattr(push, "apns", None)
        f = getattr(push, "fcm", None)
        return cls(
            wait=float(getattr(push, "wait", DEFAULT_WAIT)),
            apns=None if a is None else ApnsSettings(
                str(a.key_file), str(a.key_id), str(a.team_id),
                str(getattr(a, "url", None) or apns.PRODUCTION_URL),
                getattr(a, "ca_file", None) or None,
            ),
            fcm=None if f is None else FcmSettings(
                str(f.service_account), str(getattr(f, "url", None) or fcm.DEFAULT_URL),
                getattr(f, "ca_file", None) or None,
            ),
        )


def _verify(field: str, ca_file: str | None, base: Path) -> ssl.SSLContext | bool:
    if not ca_file:
        return True
    path = base / ca_file
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise PushConfigError(field, f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def check(settings: PushSettings, base: Path) -> None:
    """Everything `build_service` would check, without building anything: for `b2bua check`."""
    _clients(settings, base, build=False)


def build_service(settings: PushSettings, base: Path) -> PushService | None:
    """The push service for `settings` (None when no provider is configured). `base`: the
    directory relative file names are read from. Must run inside the event loop that will use
    it. PushConfigError on a bad setting or key file."""
    clients = _clients(settings, base, build=True)
    if not clients:
        return None
    return PushService(clients, timeout=settings.timeout)


def _clients(settings: PushSettings, base: Path, *, build: bool) -> list[PushClient]:
    if not 1 <= settings.wait <= MAX_WAIT:
        raise PushConfigError("push.wait", f"must be between 1 and {MAX_WAIT:g} seconds")
    clients: list[PushClient] = []
    a = settings.apns
    if a is not None:
        url = check_url("push.apns.url", a.url)
        credentials = ApnsCredentials.load(base / a.key_file, a.key_id, a.team_id)
        verify = _verify("push.apns.ca_file", a.ca_file, base)
        if build:
            clients.append(apns.ApnsClient(credentials, url=url, verify=verify,
                                           timeout=settings.timeout))
    f = settings.fcm
    if f is not None:
        url = check_url("push.fcm.url", f.url)
        account = ServiceAccount.load(base / f.service_account)
        verify = _verify("push.fcm.ca_file", f.ca_file, base)
        if build:
            clients.append(fcm.FcmClient(account, url=url, verify=verify,
                                         timeout=settings.timeout))
    return clients
