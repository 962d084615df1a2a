"""Requests the trunk layer sends on its own (REGISTER, OPTIONS), and what it reads back.

The machines of this package build a `Request` without a Via: the shell that sends it adds its
own top Via with a fresh branch (it knows the local address of the flow), starts the client
transaction, and hands the final response, a timeout or a transport failure back to the machine
that asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from b2bua.sip.message import Request, Response
from b2bua.trunks.digest import Challenge, Credentials, authorization

__all__ = ["OutgoingRequest", "Purpose", "build_request", "retry_after", "with_credentials"]

Purpose = Literal["register", "options"]
MAX_FORWARDS = "70"


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A request for the shell to send to trunk `trunk` (its address and transport)."""

    trunk: str
    purpose: Purpose
    request: Request


def build_request(
    method: str,
    request_uri: str,
    *,
    from_uri: str,
    to_uri: str,
    from_tag: str,
    call_id: str,
    cseq: int,
    contact: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Request:
    """A request outside a dialog, without Via (see the module docstring)."""
    fields = [
        ("Max-Forwards", MAX_FORWARDS),
        ("From", f"<{from_uri}>;tag={from_tag}"),
        ("To", f"<{to_uri}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        fields.append(("Contact", contact))
    fields.extend(headers)
    return Request(method, request_uri, fields)


def with_credentials(
    request: Request,
    challenges: list[Challenge],
    credentials: Credentials,
    random_token: Callable[[], str],
) -> Request:
    """`request` with one Authorization / Proxy-Authorization per challenge."""
    for challenge in challenges:
        name, value = authorization(
            challenge, credentials, request.method, request.request_uri_text, random_token()
        )
        request.headers.add(name, value)
    return request


def retry_after(response: Response) -> float | None:
    """The seconds of a `Retry-After: 120 (comment);duration=60` header, if any
    (RFC 3261 §20.33: delta-seconds first)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    digits = ""
    for ch in value.strip():
        if not ch.isdigit():
            break
        digits += ch
    return float(digits) if digits and len(digits) <= 9 else None
