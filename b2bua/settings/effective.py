"""The one loader of the effective configuration: the TOML file plus the settings stored from
the dashboard, exactly as `b2bua run` installs it (`SettingsStore.resolve`, shared by both).

Every command that reads settings (`trace`, `week`, `devices`, `calls`, `check`, `export`,
`qr`, `ics-export`) loads through `load_effective`, so what the command line says is what the
running server does. The database is opened read-only, next to a running server if any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from b2bua.config import Config, load_config
from b2bua.settings.overrides import (
    MusicUpload,
    Rejection,
    SettingsStore,
    UserOverride,
    open_store,
)
from b2bua.store import database_path

__all__ = ["Effective", "UnknownTenant", "load_effective"]


class UnknownTenant(LookupError):
    """`--tenant DOMAIN` names no served company; `served` are the domains that are."""

    def __init__(self, domain: str, served: Sequence[str]) -> None:
        super().__init__(f"no tenant {domain!r} (served: {', '.join(served)})")
        self.domain = domain
        self.served = tuple(served)


@dataclass(frozen=True, slots=True)
class Effective:
    """`config` is the configuration in force; `base` the TOML file alone; `stored` the user
    rows and `uploads` the music the dashboard stored (empty without a database); `rejected`
    the stored settings left out because they no longer validate."""

    base: Config
    config: Config
    stored: Mapping[str, UserOverride] = field(default_factory=dict)
    uploads: Sequence[MusicUpload] = ()
    rejected: Sequence[Rejection] = ()
    database: Path | None = None
    tenant: str = ""  # the company (docs/tenants.md): '' is the top-level one

    def stored_keys(self, extension: str) -> frozenset[str]:
        """The keys of `extension`'s section that come from the store (all for a user created
        from the dashboard)."""
        row = self.stored.get(extension)
        if row is None or row.deleted:
            return frozenset()
        if row.created:
            return frozenset({"*"})
        return frozenset(row.values)


def load_effective(path: str | Path, tenant: str | None = None) -> Effective:
    """Read the TOML file (ConfigError as `load_config`) and merge the stored settings: of the
    top-level company, or of `tenant` (a domain; UnknownTenant when none is served there),
    whose configuration is then its view of the file (`Config.tenant_view`)."""
    base = load_config(path)
    key = "" if tenant is None or tenant.lower() == base.server.domain.lower() else tenant.lower()
    store = open_store(base, readonly=True)
    database = None if base.store.url else database_path(base.server.data_dir)
    if not key:
        if store is None:
            return Effective(base, base)
        try:
            config, rejected = store.resolve()
            return Effective(base, config, store.overrides(), store.uploads(), rejected,
                             database)
        finally:
            store.conn.close()
    from b2bua.tenants.store import declared, stored_rows

    try:
        items = declared(base, stored_rows(store.conn) if store is not None else {})
        item = next((i for i in items if i.key == key), None)
        if item is None:
            raise UnknownTenant(tenant or key, [i.domain for i in items])
        view = item.view(base)
        if store is None:
            return Effective(view, view, tenant=key)
        own = SettingsStore(store.conn, view, migrate=False, tenant=key)
        config, rejected = own.resolve()
        return Effective(view, config, own.overrides(), own.uploads(), rejected, database,
                         tenant=key)
    finally:
        if store is not None:
            store.conn.close()
