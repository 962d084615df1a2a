"""Message-waiting indication (RFC 3842 over RFC 6665): phones subscribe to their own voicebox
with `SUBSCRIBE` (`Event: message-summary`) and get a NOTIFY now and whenever a message arrives.

A subscription is a dialog we hold as notifier: our To tag, the subscriber's Contact as remote
target, our own CSeq. Refreshes come inside the dialog; `Expires: 0` ends it with a final NOTIFY
(`Subscription-State: terminated`). Subscriptions live in memory: a phone re-subscribes after a
restart as it re-registers (with several workers, a worker started again takes its own back:
b2bua.workers_journal).

Sans-IO like the call engine: answers and NOTIFYs are commands in the shared outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from b2bua.addressing import Local
from b2bua.calls.engine import refusal
from b2bua.commands import Outbox, Respond, SendRequest
from b2bua.registrar.model import AuthResult
from b2bua.sip.dialog import Dialog
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.transaction import ServerTransaction

log = logging.getLogger(__name__)

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


@dataclass(eq=False)
class Subscription:
    extension: str
    dialog: Dialog
    flow: Flow
    expires_at: float


class Authenticator(Protocol):
    def authenticate(
        self, request: Request, now: float, header: str = ..., *, flow: Flow | None = ...
    ) -> AuthResult: ...


class MessageWaiting:
    def __init__(
        self,
        outbox: Outbox,
        local: Local,
        registrar: Authenticator,
        domain: str,
        counts: Callable[[str], tuple[int, int]],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.local = local
        self.registrar = registrar
        self.domain = domain
        self.counts = counts  # extension -> (new, old) voice messages
        self.wall_clock = wall_clock
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.notifies = 0
        # Told of every subscription made or refreshed (True) and ended (False): the workers'
        # journal keeps them (b2bua.workers_journal).
        self.on_change: Callable[[Subscription, bool], None] | None = None

    def _respond(self, tx: ServerTransaction, response: Response, stateless: bool = False) -> None:
        """Answer `tx`; `stateless` for a refusal the same request would get again, whatever
        came before (RFC 3261 §8.2.7: nothing is kept for it)."""
        self.outbox.append(Respond(tx, response, stateless=stateless))

    def subscribe(self, tx: ServerTransaction, request: Request, flow: Flow) -> None:
        """A SUBSCRIBE, new or a refresh within one of our subscription dialogs."""
        event = (request.headers.get("event") or "").split(";", 1)[0].strip().lower()
        if event != EVENT:
            self._respond(tx, make_response(request, 489, to_tag=self.local.tokens.tag(),
                                            headers=[("Allow-Events", EVENT)]), stateless=True)
            return
        now = self.wall_clock()
        try:
            expires = request.expires
        except SipParseError:
            expires = None
        expires = MAX_EXPIRES if expires is None else expires
        if 0 < expires < MIN_EXPIRES:
            self._respond(tx, make_response(request, 423, to_tag=self.local.tokens.tag(),
                                            headers=[("Min-Expires", str(MIN_EXPIRES))]),
                          stateless=True)
            return
        expires = min(expires, MAX_EXPIRES)
        to_tag = request.to.tag
        if to_tag is not None:
            sub = self.subscriptions.get((request.call_id, to_tag))
            if sub is None:
                self._respond(tx, make_response(request, 481), stateless=True)
                return
            sub.dialog.refresh_target(request)
        else:
            auth = self.registrar.authenticate(request, now, header="Proxy-Authorization", flow=flow)
            if not auth.ok or auth.extension is None:
                # A refusal that counted no failed authentication (a challenge, a locked-out
                # source's 403) would be the same again: no state kept (RFC 3261 §8.2.7).
                self._respond(tx, refusal(request, auth, self.local.tokens.tag()),
                              stateless=not auth.counted)
                return
            dialog = Dialog.as_uas(request, self.local.tokens.tag())
            sub = Subscription(auth.extension, dialog, flow, now + expires)
            self.subscriptions[(dialog.call_id, dialog.local_tag)] = sub
        sub.expires_at = now + expires
        sub.flow = flow
        self._respond(tx, make_response(
            request, 200, to_tag=sub.dialog.local_tag,
            headers=[("Expires", str(expires)), ("Contact", self.local.contact(flow, "mwi"))],
        ))
        self._notify(sub, terminated=expires == 0)
        if expires == 0:
            self.subscriptions.pop((sub.dialog.call_id, sub.dialog.local_tag), None)
        if self.on_change is not None:
            self.on_change(sub, expires != 0)

    def restore(self, extension: str, dialog: Dialog, flow: Flow, expires_at: float) -> None:
        """Take back a subscription this process held in a previous life (a worker started
        again, b2bua.workers_journal), and tell the phone the current count."""
        sub = Subscription(extension, dialog, flow, expires_at)
        self.subscriptions[(dialog.call_id, dialog.local_tag)] = sub
        self._notify(sub)
        if self.on_change is not None:
            self.on_change(sub, True)  # journaled again, for a next restart

    def message_left(self, extension: str) -> None:
        """A voice message arrived (or was read or deleted): tell every subscribed phone."""
        now = self.wall_clock()
        for key, sub in list(self.subscriptions.items()):
            if sub.expires_at <= now:
                del self.subscriptions[key]
                if self.on_change is not None:
                    self.on_change(sub, False)
            elif sub.extension == extension:
                self._notify(sub)

    def _notify(self, sub: Subscription, terminated: bool = False) -> None:
        new, old = self.counts(sub.extension)
        # A tenant's box is `EXT@DOMAIN` (b2bua.tenants.names): its account is at its domain.
        ext, _, domain = sub.extension.partition("@")
        body = (
            f"Messages-Waiting: {'yes' if new else 'no'}\r\n"
            f"Message-Account: sip:{ext}@{domain or self.domain}\r\n"
            f"Voice-Message: {new}/{old} (0/0)\r\n"
        ).encode()
        remaining = max(0, int(sub.expires_at - self.wall_clock()))
        state = "terminated;reason=timeout" if terminated else f"active;expires={remaining}"
        via, _ = self.local.via(sub.flow)
        notify = sub.dialog.request(
            "NOTIFY",
            via,
            contact=self.local.contact(sub.flow, "mwi"),
            headers=[("Event", EVENT), ("Subscription-State", state),
                     ("Content-Type", CONTENT_TYPE)],
            body=body,
        )
        self.notifies += 1
        self.outbox.append(SendRequest(notify, sub.flow))

