"""Registrar: REGISTER with digest auth, bindings and the location service (docs/registrar.md).

`build_registrar(config, conn, now=...)` wires the sans-IO `Registrar` to the shared SQLite
database: the nonce key is kept in the database (so nonces stay valid across a restart) and the
stored bindings are loaded.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from b2bua.registrar.core import PendingRegister, Registrar
from b2bua.registrar.digest import DigestServer, Verdict
from b2bua.registrar.location import (
    BindingAppeared,
    LocationService,
    binding_key,
    contact_identity,
    contact_is_natted,
)
from b2bua.registrar.lockout import Lockout
from b2bua.registrar.model import (
    AuthResult,
    Binding,
    DeviceClaim,
    DeviceSpec,
    LocationStore,
    MemoryLocationStore,
    RegistrarSettings,
    StoreBatch,
    StoreError,
    UserAccount,
    users_from_config,
)
from b2bua.registrar.sqlite_store import SqliteLocationStore

__all__ = [
    "AuthResult",
    "Binding",
    "BindingAppeared",
    "DeviceClaim",
    "DeviceSpec",
    "DigestServer",
    "LocationService",
    "LocationStore",
    "Lockout",
    "MemoryLocationStore",
    "PendingRegister",
    "Registrar",
    "RegistrarSettings",
    "SqliteLocationStore",
    "StoreBatch",
    "StoreError",
    "UserAccount",
    "Verdict",
    "binding_key",
    "build_registrar",
    "contact_identity",
    "contact_is_natted",
    "users_from_config",
]

NONCE_KEY_NAME = "registrar.nonce_key"


def build_registrar(
    config: Any,
    conn: sqlite3.Connection,
    *,
    now: float,
    random_bytes: Callable[[int], bytes] = os.urandom,
    local_addresses: Iterable[str] = (),
    connections_survived: bool = False,
    tenants: Iterable[tuple[str, str, Iterable[UserAccount], int]] = (),
) -> Registrar:
    """A registrar for `config` over the shared database, its bindings restored as of `now`
    (Unix time). `local_addresses`: our IP addresses besides the configured listen hosts.
    `connections_survived`: TCP/TLS connections are still open (a worker that is not the
    first, b2bua.workers), so their bindings stay reachable. `tenants`: (key, domain, users,
    device limit) of every other company served (docs/tenants.md), set before the bindings
    are restored."""
    from b2bua.store import get_or_create_secret

    store = SqliteLocationStore(conn)
    key = get_or_create_secret(conn, NONCE_KEY_NAME, 32, random_bytes)
    registrar = Registrar.from_config(
        config, store, nonce_key=key, random_bytes=random_bytes, local_addresses=local_addresses
    )
    for tenant, domain, users, max_devices in tenants:
        registrar.set_tenant(tenant, domain, users, max_devices)
    registrar.restore(now, connections_survived=connections_survived)
    return registrar
