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
from b2bua.settings.overrides import MusicUpload, Rejection, UserOverride, open_store
from b2bua.store import database_path

__all__ = ["Effective", "load_effective"]


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

    def stored_keys(self, extension: str) -> frozenset[str]:
        """The keys of `extension`'s section that come from the store (all for a user created
        from the dashboard)."""
        row = self.stored.get(extension)
        if row is None or row.deleted:
            return frozenset()
        if row.created:
            return frozenset({"*"})
        return frozenset(row.values)


def load_effective(path: str | Path) -> Effective:
    """Read the TOML file (ConfigError as `load_config`) and merge the stored settings."""
    base = load_config(path)
    store = open_store(base, readonly=True)
    if store is None:
        return Effective(base, base)
    try:
        config, rejected = store.resolve()
        return Effective(
            base, config, store.overrides(), store.uploads(), rejected,
            None if base.store.url else database_path(base.server.data_dir),
        )
    finally:
        store.conn.close()
