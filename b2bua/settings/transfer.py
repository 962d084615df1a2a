"""`b2bua import`'s core: the stored rows that make the TOML file plus the store equal another
configuration's users."""

from __future__ import annotations

from b2bua.config import Config
from b2bua.settings.overrides import UserOverride
from b2bua.settings.toml_writer import config_to_raw

__all__ = ["import_rows"]


def import_rows(base: Config, source: Config) -> tuple[dict[str, UserOverride], list[str]]:
    """The stored rows that make `base` + rows equal `source`'s users; plus notes about what an
    import cannot carry (server-wide sections stay the TOML file's)."""
    notes: list[str] = []
    base_raw = config_to_raw(base)
    src_raw = config_to_raw(source)
    # Music and announcements are carried as uploads (b2bua.cli.bundle), users as rows.
    for section in ("server", "registrar", "media", "trunks", "system_extensions"):
        if base_raw.get(section) != src_raw.get(section):
            notes.append(f"[{section}] differs from the running file's: not imported "
                         "(edit the TOML file for server-wide sections)")
    base_users = {u["extension"]: u for u in base_raw.get("users", [])}
    rows: dict[str, UserOverride] = {}
    for section in src_raw.get("users", []):
        ext = section["extension"]
        old = base_users.get(ext)
        if old is None:
            rows[ext] = UserOverride(ext, {k: v for k, v in section.items() if k != "extension"},
                                     True, False)
            continue
        values = {k: v for k, v in section.items() if old.get(k) != v}
        values.update({k: None for k in old if k not in section})
        if values:
            rows[ext] = UserOverride(ext, values, False, False)
    src_exts = {u["extension"] for u in src_raw.get("users", [])}
    for ext in base_users:
        if ext not in src_exts:
            rows[ext] = UserOverride(ext, {}, False, True)
    return rows, notes
