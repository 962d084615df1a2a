"""Each extension's devices with their registration state: what `b2bua devices` prints and the
dashboard's device list shows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from b2bua.registrar.model import Binding

__all__ = ["device_report", "push_info"]


def _best(bindings: Iterable[Binding]) -> Binding | None:
    best: Binding | None = None
    for b in bindings:
        if best is None or (b.reachable, b.registered_at) > (best.reachable, best.registered_at):
            best = b
    return best


def push_info(b: Binding) -> dict[str, Any] | None:
    """How the device is woken by push (RFC 8599), and the last push sent to it: None for a
    device that registered no push parameters and was never pushed to."""
    if b.push is None and b.last_push_at is None:
        return None
    return {
        "provider": b.push.provider if b.push is not None else None,
        "last_push_at": b.last_push_at,
        "last_push_result": b.last_push_result,
    }


def _binding_row(b: Binding, now: float) -> dict[str, Any]:
    return {
        "state": "registered" if b.reachable else "unreachable",
        "contact": b.contact,
        "source": str(b.flow),
        "user_agent": b.user_agent,
        "expires_in": b.expires_in(now),
        "instance": b.instance,
        "push": push_info(b),
        "registered_at": b.registered_at or None,
    }


def device_report(config: Any, bindings: Iterable[Binding], now: float) -> list[dict[str, Any]]:
    """Per extension, each configured device with its state (and unassigned registrations)."""
    by_ext: dict[str, list[Binding]] = {}
    for b in bindings:
        if b.expires_at > now:
            by_ext.setdefault(b.aor, []).append(b)
    report: list[dict[str, Any]] = []
    for user in config.users:
        ext = str(user.extension)
        mine = by_ext.get(ext, [])
        devices: list[dict[str, Any]] = []
        specs = list(getattr(user, "devices", ()))
        for i, spec in enumerate(specs):
            row: dict[str, Any] = {
                "device": i + 1,
                "type": str(spec.type),
                "label": str(spec.label),
                "username": getattr(spec, "username", None) or ext,
            }
            contact = getattr(spec, "contact", None)
            if contact:
                row.update(state="static", contact=contact, source=None, user_agent=None,
                           expires_in=None, instance=None, push=None)
            else:
                best = _best(b for b in mine if b.device == i)
                if best is None:
                    row.update(state="offline", contact=None, source=None, user_agent=None,
                               expires_in=None, instance=None, push=None)
                else:
                    row.update(_binding_row(best, now))
            devices.append(row)
        for b in mine:
            if b.device is None or not 0 <= b.device < len(specs):
                row = {"device": None, "type": None, "label": "(unassigned)",
                       "username": b.username}
                row.update(_binding_row(b, now))
                devices.append(row)
        report.append({"extension": ext, "name": str(user.name), "devices": devices})
    return report
