"""Scoped names: how a tenant's extensions, boxes and sounds are named where every tenant's
meet (the registrar's table of bindings, the voicemail index, the sound library, the trunks).

A name of the top-level company (tenant key `''`) is written as it is, `1001`, exactly as it
was before tenants existed, so stored data needs no rewrite; a name of tenant `acme.example`
is `1001@acme.example`. Extensions, usernames, music and announcement names never contain
`@`, so the split is unambiguous. Pure functions; no I/O.
"""

from __future__ import annotations

__all__ = ["DEFAULT", "parse_login", "scoped", "split", "tenant_of"]

DEFAULT = ""  # the key of the top-level company (`[server] domain`)


def scoped(name: str, tenant: str) -> str:
    """`name` of `tenant` as it is known server-wide."""
    return f"{name}@{tenant}" if tenant else name


def split(name: str) -> tuple[str, str]:
    """`(tenant, name)` of a scoped name: `1001@acme.example` -> `("acme.example", "1001")`."""
    bare, _, tenant = name.partition("@")
    return tenant, bare


def tenant_of(name: str) -> str:
    """The tenant key of a scoped name (`''` for the top-level company)."""
    return name.partition("@")[2]


def parse_login(login: str) -> tuple[str, str | None]:
    """A dashboard login: `admin` or `EXT` (no domain), `admin@DOMAIN` or `EXT@DOMAIN`; the
    domain lower-cased."""
    name, at, domain = login.rpartition("@")
    if not at:
        return login, None
    return name, domain.lower()
