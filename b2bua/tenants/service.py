"""The server's tenants: built at start from the file and the store, changed live.

Theory of operation
-------------------
At start (`load`), every tenant the file and the store declare (b2bua.tenants.store) gets its
settings store (b2bua.settings.SettingsStore, its rows only) and its effective configuration
(its view of the file with its stored user settings); the server then builds the registrar with
every tenant's users before it restores the bindings, and the call engine's `Tenants` (each
with its own directory and compiled rule book).

A change is applied to one tenant only (`apply`): its rules are compiled (a few milliseconds for
a company of twenty users, whatever the number of tenants), its registrar users and directory
replaced, the trunk service told when its trunks changed. Calls in flight keep their decision.

Other processes (workers, nodes, `b2bua import`) notice a change by its revision in `meta`:
`settings_revision@DOMAIN` for a tenant's settings, `tenants_revision` for the list of
tenants; `refresh` applies what moved, tenant by tenant.

Deleting a tenant (`remove`): its new calls and registrations are refused at once (it is no
longer served), its calls in progress end by themselves, its bindings are dropped.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from b2bua.config import Config
from b2bua.settings.overrides import SettingsStore, tenant_dir
from b2bua.settings.tables import REVISION_KEY, ensure_schema
from b2bua.tenants.model import Tenant, TenantLimits
from b2bua.tenants.names import DEFAULT
from b2bua.tenants.registry import Tenants
from b2bua.tenants.store import Declared, declared, revision, stored_rows

__all__ = ["TenantService"]

log = logging.getLogger("b2bua.tenants")


class TenantService:
    """Every tenant's settings store, declaration and sound library (module docstring)."""

    def __init__(self, base: Config, conn: sqlite3.Connection, *, migrate: bool = True) -> None:
        self.base = base  # the whole TOML file
        self.conn = conn
        if migrate:
            ensure_schema(conn)
        self.stores: dict[str, SettingsStore] = {}
        self.declared: dict[str, Declared] = {}
        self.revisions: dict[str, int] = {}
        self.tenants_revision = 0
        self._libraries: dict[str, Any] = {}
        self.library_factory: Callable[[Path], Any] | None = None

    # -- start ---------------------------------------------------------------------------------
    def load(self) -> dict[str, Config]:
        """Every tenant's effective configuration, by key (the top-level company's first)."""
        self.tenants_revision = revision(self.conn)
        out: dict[str, Config] = {}
        revisions = self.read_revisions()
        for item in declared(self.base, stored_rows(self.conn)):
            out[item.key] = self._open(item)
            self.revisions[item.key] = revisions.get(item.key, 0)
        return out

    def _open(self, item: Declared) -> Config:
        store = SettingsStore(self.conn, item.view(self.base), migrate=False, tenant=item.key)
        self.stores[item.key] = store
        self.declared[item.key] = item
        return store.effective()

    def tenant(self, key: str, config: Config, rules: Any) -> Tenant:
        """The `Tenant` of `key` for its effective `config` and rule book."""
        from b2bua.calls.directory import Directory

        item = self.declared[key]
        return Tenant(key, item.domain, item.name, config, Directory(config, key), rules,
                      item.limits, item.origin)

    def build(self, configs: dict[str, Config], rulebook: Callable[[Config], Any]) -> Tenants:
        """The call engine's tenants; `rulebook(config)` compiles one tenant's rule book."""
        return Tenants(self.tenant(key, config, rulebook(config)) for key, config in
                       configs.items())

    def registrar_users(self, configs: dict[str, Config]) -> list[tuple[str, str, list[Any], int]]:
        """(key, domain, users, device limit) of every tenant but the top-level company."""
        from b2bua.registrar import users_from_config

        return [(key, self.declared[key].domain, users_from_config(config),
                 self.declared[key].limits.devices)
                for key, config in configs.items() if key != DEFAULT]

    # -- sounds ----------------------------------------------------------------------------------
    def library(self, key: str) -> Any:
        """A tenant's sound library (its uploads under `data_dir/tenants/DOMAIN`, then the
        shipped sounds); made at first use."""
        library = self._libraries.get(key)
        if library is None:
            assert self.library_factory is not None
            library = self._libraries[key] = self.library_factory(
                tenant_dir(Path(self.base.server.data_dir), key))
        return library

    def forget_sounds(self) -> None:
        for library in self._libraries.values():
            library.forget()

    # -- changes ---------------------------------------------------------------------------------
    def read_revisions(self) -> dict[str, int]:
        """Every tenant's settings revision, by key (one query)."""
        try:
            rows = self.conn.execute(
                "SELECT key, value FROM meta WHERE key = ? OR key LIKE ?",
                (REVISION_KEY, REVISION_KEY + "@%")).fetchall()
        except sqlite3.OperationalError:
            return {}
        return {str(k).partition("@")[2]: int(v) for k, v in rows}

    def changed(self) -> tuple[bool, list[str]]:
        """Whether the list of tenants moved, and the tenants whose settings moved, since they
        were last applied."""
        listed = revision(self.conn) != self.tenants_revision
        revisions = self.read_revisions()
        moved = [key for key in self.stores if revisions.get(key, 0) != self.revisions.get(key)]
        return listed, moved

    def reload_declarations(self) -> tuple[list[Declared], list[str]]:
        """The list of tenants read again: (tenants to add or update, keys to remove)."""
        self.tenants_revision = revision(self.conn)
        items = declared(self.base, stored_rows(self.conn))
        keys = {item.key for item in items}
        gone = [key for key in self.stores if key not in keys]
        return items, gone

    def effective(self, item: Declared) -> Config:
        """The effective configuration of a (new or changed) declared tenant."""
        old = self.declared.get(item.key)
        if old is not None and old == item:
            return self.stores[item.key].effective()
        return self._open(item)

    def forget(self, key: str) -> None:
        self.stores.pop(key, None)
        self.declared.pop(key, None)
        self.revisions.pop(key, None)
        self._libraries.pop(key, None)

    def limits(self, key: str) -> TenantLimits:
        item = self.declared.get(key)
        return item.limits if item is not None else TenantLimits()
