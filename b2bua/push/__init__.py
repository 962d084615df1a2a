"""Push notifications that wake sleeping mobile softphones (RFC 8599): Apple APNs and Firebase
Cloud Messaging (docs/push.md).

`model` holds the values (a device's push address, a notification, a provider's verdict),
`apns` and `fcm` the two providers (the request they take and how to read their answer, and the
HTTP client that sends it), `service` the non-blocking `PushService` in front of them, and
`settings` the `[push]` section and how it builds the service.

Only the values are imported here (the registrar keeps a `PushTarget` on its bindings without
loading an HTTP client); import the service from `b2bua.push.service` and `b2bua.push.settings`.
"""

from __future__ import annotations

from b2bua.push.model import (
    APNS,
    FCM,
    PROVIDERS,
    CallEvent,
    Notification,
    Outcome,
    PushConfigError,
    PushParamError,
    PushResult,
    PushTarget,
)

__all__ = [
    "APNS",
    "FCM",
    "PROVIDERS",
    "CallEvent",
    "Notification",
    "Outcome",
    "PushConfigError",
    "PushParamError",
    "PushResult",
    "PushTarget",
]
