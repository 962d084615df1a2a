"""Fork-late, the push side of one call: which devices to wake, which woken device joins the call,
and which must be told that the call is over.

Theory of operation
-------------------
Sans-IO, like the call engine that drives it: events in (`start`, `binding_appeared`,
`handle_deadline`, `end`), commands out (`WakeDevice`: send this push; `RingDevice`: add a branch
to this binding now). `now` is the caller's clock; the only deadline is `next_deadline()`.

1. `start(bindings, now)` with the extension's push-capable bindings (`Registrar.push_bindings`):
   a device whose flow is gone is woken with a `call` push; so is every APNs VoIP device, even
   one still reachable (iOS wants a PushKit push for every call it is to show), though a
   reachable device is rung at once on its flow by the engine and never joins a second time.
2. `binding_appeared(binding, now)` (the registrar's `BindingAppeared`): a device that was woken
   and registers again (same instance id, else the same push token) before `wait` runs out joins
   the call: one `RingDevice`, never two for one device.
3. When `wait` runs out (`handle_deadline`), the devices that did not come stop being waited for:
   an APNs VoIP device among them gets a `call_ended` push (reason `timeout`), or CallKit would go
   on showing a call that will never reach it.
4. `end(reason, now)` (answered elsewhere, cancelled, or the ring timed out): every APNs VoIP
   device that was woken and did not join gets `call_ended` with that reason; a device that joined
   is cancelled by the engine like any branch. Nothing happens after `end`.

Android (FCM) devices get no `call_ended`: an app woken by a data message shows nothing until the
INVITE arrives, and a late one finds no INVITE.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from b2bua.push.apns import apns_topic
from b2bua.push.model import APNS, CallEvent, Notification, PushTarget
from b2bua.registrar.model import Binding


def device_of(binding: Binding) -> str | None:
    """What identifies a device across flows: its instance id, else its push token."""
    if binding.instance:
        return "i:" + binding.instance
    if binding.push is not None:
        return f"t:{binding.push.provider}:{binding.push.prid}"
    return None


def always_push(target: PushTarget) -> bool:
    """APNs VoIP pushes are sent even to a device that can be reached: iOS shows a call only for
    a PushKit push."""
    if target.provider != APNS:
        return False
    try:
        return apns_topic(target.param).voip
    except ValueError:
        return False


class Wait(enum.Enum):
    WOKEN = "woken"  # pushed, not registered again yet
    JOINED = "joined"  # registered again in time: rung
    RUNG = "rung"  # reachable when the call came: rung directly
    MISSED = "missed"  # did not come within `wait`
    ENDED = "ended"  # told the call is over


@dataclass(frozen=True, slots=True)
class WakeDevice:
    """Command: push `notification` to `target` (for `binding`)."""

    binding: Binding
    target: PushTarget
    notification: Notification


@dataclass(frozen=True, slots=True)
class RingDevice:
    """Command: add a branch to the call for `binding`, now (it registered again after a push),
    its INVITE carrying `call_id` (the Call-ID its push announced)."""

    binding: Binding
    call_id: str


@dataclass(slots=True)
class _Device:
    binding: Binding
    target: PushTarget
    state: Wait
    call_id: str  # of the INVITE it will get: its push says it
    ended_notice: bool  # gets `call_ended` when it does not join


@dataclass(slots=True)
class PushFork:
    """The push side of one call to one extension (module docstring). `call_ids` gives the
    Call-ID of the INVITE a device will receive (each branch is a dialog of its own), which its
    push carries; `wait` is the seconds a woken device has."""

    aor: str
    call_ids: Callable[[Binding], str]
    caller: str
    display_name: str
    wait: float
    devices: dict[str, _Device] = field(default_factory=dict)
    deadline: float = math.inf
    over: bool = False

    def start(self, bindings: Iterable[Binding], now: float) -> list[WakeDevice]:
        """The pushes to send as the call starts ringing."""
        out: list[WakeDevice] = []
        for b in bindings:
            device = device_of(b)
            if b.push is None or device is None or device in self.devices or not b.live(now):
                continue
            voip = always_push(b.push)
            if b.reachable and not voip:
                continue  # rung on its flow, no push needed
            state = Wait.RUNG if b.reachable else Wait.WOKEN
            entry = self.devices[device] = _Device(b, b.push, state, self.call_ids(b), voip)
            out.append(WakeDevice(b, b.push, self._notification(entry, CallEvent.INCOMING, "")))
        if any(d.state is Wait.WOKEN for d in self.devices.values()):
            self.deadline = now + self.wait
        return out

    def binding_appeared(self, binding: Binding, now: float) -> RingDevice | None:
        """A binding of the extension came on a new flow: ring it if it is a woken device that
        is still awaited."""
        if self.over or now >= self.deadline:
            return None
        device = self.devices.get(device_of(binding) or "")
        if device is None or device.state is not Wait.WOKEN:
            return None
        device.state = Wait.JOINED
        device.binding = binding
        return RingDevice(binding, device.call_id)

    @property
    def waiting(self) -> int:
        """Devices woken and still awaited."""
        return sum(1 for d in self.devices.values() if d.state is Wait.WOKEN)

    def next_deadline(self) -> float | None:
        if self.over or not self.waiting:
            return None
        return self.deadline

    def handle_deadline(self, now: float) -> list[WakeDevice]:
        """`wait` ran out: the devices that did not come are no longer awaited."""
        if self.over or now < self.deadline:
            return []
        out: list[WakeDevice] = []
        for device in self.devices.values():
            if device.state is Wait.WOKEN:
                device.state = Wait.MISSED
                out.extend(self._ended(device, "timeout"))
        return out

    def end(self, reason: str, now: float) -> list[WakeDevice]:
        """The call stopped ringing (`answered_elsewhere`, `cancelled`, `timeout`): the woken
        APNs VoIP devices that did not join are told."""
        if self.over:
            return []
        self.over = True
        out: list[WakeDevice] = []
        for device in self.devices.values():
            # A device rung on its flow (or that joined) is cancelled by the engine like any
            # branch: the CANCEL ends the call CallKit shows.
            if device.state is Wait.WOKEN:
                out.extend(self._ended(device, reason))
        return out

    def _ended(self, device: _Device, reason: str) -> list[WakeDevice]:
        device.state = Wait.ENDED
        if not device.ended_notice:
            return []
        return [WakeDevice(device.binding, device.target,
                           self._notification(device, CallEvent.ENDED, reason))]

    def _notification(self, device: _Device, event: CallEvent, reason: str) -> Notification:
        return Notification(event, device.call_id, self.caller, self.display_name, reason,
                            ttl=self.wait)
