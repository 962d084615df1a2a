"""A tenant as the call engine and the registrar serve it: the per-company view of the
configuration, its call directory and rule book, its limits, and the calls it has in progress.

A `Tenant` is replaced part by part when its settings change (`directory` and `rules` are
swapped by the server, never mutated), so a call in flight keeps what it read. Sans-IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from b2bua.tenants.names import DEFAULT

if TYPE_CHECKING:
    from b2bua.calls.directory import Directory
    from b2bua.calls.ports import Rules

__all__ = ["Tenant", "TenantLimits"]


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """Most users configured, devices registered and calls in progress at once (0: none)."""

    users: int = 0
    devices: int = 0
    calls: int = 0

    @classmethod
    def from_config(cls, limits: Any) -> TenantLimits:
        if limits is None:
            return cls()
        return cls(int(limits.users), int(limits.devices), int(limits.calls))


@dataclass(eq=False, slots=True)
class Tenant:
    """One company: `key` is `''` for the top-level company (`[server] domain`), else its
    domain. `config` is the company's effective configuration (`Config.tenant_view` with the
    settings stored from the dashboard), `directory` and `rules` what calls read of it."""

    key: str
    domain: str
    name: str
    config: Any
    directory: Directory
    rules: Rules
    limits: TenantLimits = TenantLimits()
    origin: str = "file"  # "file": declared in the TOML; "api": created from the API
    calls: int = 0  # calls in progress (counted by the call engine)
    closing: bool = False  # being deleted: its new calls are refused
    suffix: str = field(init=False)

    def __post_init__(self) -> None:
        self.suffix = f"@{self.key}" if self.key else ""

    @property
    def is_default(self) -> bool:
        return self.key == DEFAULT

    def aor(self, extension: str) -> str:
        """`extension` as the registrar and every shared table know it (b2bua.tenants.names)."""
        return extension + self.suffix

    def at_call_limit(self) -> bool:
        """Whether a new call would exceed the tenant's limit of calls in progress."""
        most = self.limits.calls
        return bool(most) and self.calls >= most
