"""Cross-reference checks on the raw document: what one field cannot tell on its own (an unknown
colleague, a `mobile` destination for a user without a mobile number, duplicate extensions, a
16th caller-ID exception...). Each finding is a (key path, code, params) triple: the code and
parameters of b2bua.config.messages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from b2bua.config.issues import KeyPath
from b2bua.config.locator import line_for
from b2bua.config.schema import MAX_EXCEPTIONS, SHIPPED_MUSIC, SHIPPED_PROMPTS

__all__ = ["cross_check"]


def _tables(raw: Mapping[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = raw.get(key)
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield i, item


def _str(table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    return value if isinstance(value, str) else None


Finding = tuple[KeyPath, str, dict[str, Any]]


def cross_check(raw: Mapping[str, Any], lines: Mapping[KeyPath, int]) -> list[Finding]:
    """Every cross-reference finding of the document: the provider's sections, the top-level
    company, each `[[tenants]]` company (paths from the root: `tenants[i].users[j]...`), and
    what tenants must not share (domains, DIDs)."""
    out = _provider(raw)
    out.extend(_company(raw, lines))
    if not any(True for _ in _tables(raw, "tenants")):
        return out
    for i, section in _tables(raw, "tenants"):
        prefix: KeyPath = ("tenants", i)
        for path, code, params in _company(section, _Prefixed(lines, prefix)):
            if isinstance(params.get("other"), list):
                params = {**params, "other": [*prefix, *params["other"]]}
            out.append(((*prefix, *path), code, params))
        out.extend(_limits(section, prefix))
    out.extend(_tenant_checks(raw))
    return out


class _Prefixed:
    """The line table of a tenant's section, by paths relative to it."""

    def __init__(self, lines: Mapping[KeyPath, int], prefix: KeyPath) -> None:
        self.lines = lines
        self.prefix = prefix

    def get(self, path: KeyPath) -> int | None:
        return self.lines.get((*self.prefix, *path))


def _limits(section: Mapping[str, Any], prefix: KeyPath) -> list[Finding]:
    """A tenant declares no more users than its limit allows."""
    limits = section.get("limits")
    if not isinstance(limits, dict):
        return []
    most = limits.get("users")
    users = section.get("users")
    count = len(users) if isinstance(users, list) else 0
    if isinstance(most, int) and not isinstance(most, bool) and 0 < most < count:
        return [((*prefix, "limits", "users"), "tenant_user_limit",
                 {"max": most, "count": count})]
    return []


def _tenant_checks(raw: Mapping[str, Any]) -> list[Finding]:
    """Domains are unique (the top level's is `[server] domain`), a DID belongs to one company,
    trunk names carry no `@` (a tenant's trunk is known as `NAME@DOMAIN` server-wide)."""
    from b2bua.rules.numbers import normalize_number

    out: list[Finding] = []
    server = raw.get("server")
    top = _str(server, "domain") if isinstance(server, dict) else None
    country = (_str(server, "country_code") if isinstance(server, dict) else None) or "33"
    domains: dict[str, KeyPath] = {}
    if top is not None:
        domains[top.lower()] = ("server", "domain")
    companies: list[tuple[KeyPath, Mapping[str, Any]]] = [((), raw)]
    for i, section in _tables(raw, "tenants"):
        companies.append((("tenants", i), section))
        domain = _str(section, "domain")
        if domain is None:
            continue
        path: KeyPath = ("tenants", i, "domain")
        if domain.lower() in domains:
            out.append((path, "duplicate_domain",
                        {"domain": domain, "other": list(domains[domain.lower()])}))
        else:
            domains[domain.lower()] = path
    # The DIDs of each company; a number of two companies is reported at the later one.
    owners: dict[str, tuple[KeyPath, KeyPath]] = {}
    for prefix, company in companies:
        for j, trunk in _tables(company, "trunks"):
            name = _str(trunk, "name")
            if name is not None and "@" in name:
                out.append(((*prefix, "trunks", j, "name"), "trunk_name_at", {"name": name}))
            did = trunk.get("did")
            if not isinstance(did, dict):
                continue
            for number in did:
                if not isinstance(number, str):
                    continue
                key = normalize_number(number, country)
                where: KeyPath = (*prefix, "trunks", j, "did", number)
                known = owners.get(key)
                if known is None:
                    owners[key] = (prefix, where)
                elif known[0] != prefix:
                    out.append((where, "did_taken", {"number": number, "other": list(known[1])}))
    return out


def _provider(raw: Mapping[str, Any]) -> list[Finding]:
    """The provider's own sections: server and registrar."""
    out: list[Finding] = []
    params: dict[str, Any]
    # Server.
    server = raw.get("server")
    if isinstance(server, dict):
        listen = server.get("listen")
        if isinstance(listen, list) and any(
            isinstance(s, str) and s.startswith("tls:") for s in listen
        ):
            for key in ("tls_cert", "tls_key"):
                if key not in server:
                    out.append((("server", key), "tls_required", {}))
        algos = server.get("auth_algorithms")
        if isinstance(algos, list) and len(set(map(str, algos))) != len(algos):
            out.append((("server", "auth_algorithms"), "duplicate_algorithm", {}))

    # Registrar timers.
    reg = raw.get("registrar")
    if isinstance(reg, dict):
        lo, default, hi = (
            reg.get(k, d)
            for k, d in (("min_expires", 60), ("default_expires", 3600), ("max_expires", 3600))
        )
        if all(isinstance(v, int) for v in (lo, default, hi)):
            if lo > hi:
                out.append((("registrar", "min_expires"), "expires_order", {"min": lo, "max": hi}))
            elif not lo <= default <= hi:
                params = {"default": default, "min": lo, "max": hi}
                out.append((("registrar", "default_expires"), "default_expires_range", params))
    return out


def _company(raw: Mapping[str, Any], lines: Any) -> list[Finding]:
    """The checks of one company's sections: the top level's, or a tenant's (`raw` its
    section, `lines` relative to it)."""
    out: list[Finding] = []
    params: dict[str, Any]
    users = {u: i for i, t in _tables(raw, "users") if (u := _str(t, "extension")) is not None}
    systems = {
        s: i
        for i, t in _tables(raw, "system_extensions")
        if (s := _str(t, "extension")) is not None
    }
    music = {n for _, t in _tables(raw, "music") if (n := _str(t, "name")) is not None}
    prompts = {n for _, t in _tables(raw, "announcements") if (n := _str(t, "name")) is not None}

    # Unique extensions; the later one in the file is reported.
    entries = sorted(
        (line_for(lines, (section, i)), section, i, ext)
        for section in ("users", "system_extensions")
        for i, t in _tables(raw, section)
        if (ext := _str(t, "extension")) is not None
    )
    seen: dict[str, KeyPath] = {}
    for _, section, i, ext in entries:
        if ext in seen:
            params = {"extension": ext, "other": list(seen[ext])}
            out.append(((section, i, "extension"), "duplicate_extension", params))
        else:
            seen[ext] = (section, i)
    for section in ("trunks", "music", "announcements"):
        names: set[str] = set()
        for i, t in _tables(raw, section):
            name = _str(t, "name")
            if name is None:
                continue
            if name in names:
                out.append(
                    ((section, i, "name"), "duplicate_name", {"section": section, "name": name})
                )
            names.add(name)
            if section == "music" and name in SHIPPED_MUSIC:
                out.append(((section, i, "name"), "shipped_music_name", {"name": name}))

    # Trunks: credentials come in pairs, and registering needs them.
    for i, t in _tables(raw, "trunks"):
        has_user, has_password = "username" in t, "password" in t
        if has_user != has_password:
            missing = "password" if has_user else "username"
            other = "username" if has_user else "password"
            out.append((("trunks", i, missing), "required_with", {"other": other}))
        elif t.get("register") is True and not has_user:
            out.append((("trunks", i, "username"), "required_to_register", {}))

    # System extensions: members are users.
    for i, t in _tables(raw, "system_extensions"):
        members = t.get("members")
        if isinstance(members, list):
            for j, member in enumerate(members):
                if isinstance(member, str) and member not in users:
                    path: KeyPath = ("system_extensions", i, "members", j)
                    out.append((path, "member_unknown", {"member": member}))
                elif members.index(member) != j:
                    path = ("system_extensions", i, "members", j)
                    out.append((path, "member_twice", {"member": member}))

    # Trunks: DIDs lead to an extension.
    for i, t in _tables(raw, "trunks"):
        did = t.get("did")
        if isinstance(did, dict):
            for number, target in did.items():
                if isinstance(target, str) and target not in users and target not in systems:
                    path = ("trunks", i, "did", number)
                    out.append((path, "did_unknown_extension", {"extension": target}))

    # Device usernames.
    usernames: dict[str, KeyPath] = {}
    for i, t in _tables(raw, "users"):
        for j, d in _tables(t, "devices"):
            name = _str(d, "username")
            if name is None:
                continue
            path = ("users", i, "devices", j, "username")
            if name in usernames:
                params = {"username": name, "other": list(usernames[name])}
                out.append((path, "username_taken", params))
            elif (name in users and users[name] != i) or name in systems:
                out.append((path, "username_is_extension", {"username": name}))
            usernames.setdefault(name, path[:-1])

    # Users.
    for i, t in _tables(raw, "users"):
        base: KeyPath = ("users", i)
        ext = _str(t, "extension")
        music_name = _str(t, "hold_music")
        if music_name is not None and music_name not in SHIPPED_MUSIC and music_name not in music:
            known = sorted(SHIPPED_MUSIC | music)
            params = {"name": music_name, "known": known}
            out.append(((*base, "hold_music"), "unknown_music", params))
        exceptions = t.get("exceptions")
        if isinstance(exceptions, list) and len(exceptions) > MAX_EXCEPTIONS:
            params = {"max": MAX_EXCEPTIONS, "number": MAX_EXCEPTIONS + 1}
            out.append(((*base, "exceptions", MAX_EXCEPTIONS), "too_many_exceptions", params))

        dest = _DestinationChecker(out, ext, "mobile" in t, users, systems, prompts).check
        dest((*base, "no_answer"), t.get("no_answer"), where="no_answer")
        dest((*base, "forward"), t.get("forward"), where="forward")
        for j, e in _tables(t, "exceptions"):
            dest((*base, "exceptions", j, "destination"), e.get("destination"), where="exception")
        schedule = t.get("schedule")
        if isinstance(schedule, dict):
            sbase = (*base, "schedule")
            dest((*sbase, "closed"), schedule.get("closed"), where="closed")
            for j, h in _tables(schedule, "hours"):
                start, end = _str(h, "start"), _str(h, "end")
                if start is not None and end is not None and start == end:
                    out.append(((*sbase, "hours", j, "end"), "hours_equal", {}))
            for j, p in _tables(schedule, "exceptional"):
                pbase = (*sbase, "exceptional", j)
                dest((*pbase, "destination"), p.get("destination"), where="exceptional")
                has_start, has_end = "start" in p, "end" in p
                if has_start != has_end:
                    missing = "end" if has_start else "start"
                    out.append(((*pbase, missing), "window_incomplete", {}))
                elif has_start and p.get("start") == p.get("end"):
                    out.append(((*pbase, "end"), "window_equal", {}))
    return out


@dataclass(slots=True)
class _DestinationChecker:
    """Cross-reference checks of one user's destinations; appends to `out`."""

    out: list[Finding]
    own: str | None
    has_mobile: bool
    users: Mapping[str, int]
    systems: Mapping[str, int]
    prompts: set[str]

    def check(self, path: KeyPath, value: Any, *, where: str) -> None:
        if not isinstance(value, dict):
            return
        kind = value.get("kind")
        target = _str(value, "extension")
        out = self.out
        if kind == "devices" and where == "no_answer":
            out.append(((*path, "kind"), "no_answer_devices", {}))
        elif kind == "mobile" and not self.has_mobile:
            out.append(((*path, "kind"), "mobile_not_set", {}))
        elif kind == "voicemail" and target is not None and target not in self.users:
            out.append(((*path, "extension"), "voicemail_unknown_user", {"extension": target}))
        elif kind == "extension" and target is not None:
            if target in self.systems:
                out.append(((*path, "extension"), "extension_is_system", {"extension": target}))
            elif target not in self.users:
                out.append(((*path, "extension"), "unknown_colleague", {"extension": target}))
            elif target == self.own and value.get("voicemail") is not True:
                out.append(((*path, "extension"), "own_extension", {}))
        elif kind == "system" and target is not None and target not in self.systems:
            params = {"extension": target, "is_user": target in self.users}
            out.append(((*path, "extension"), "unknown_system_extension", params))
        elif kind == "announcement":
            message = _str(value, "message")
            if message is not None and message not in SHIPPED_PROMPTS | self.prompts:
                # Other users' own absence messages (absence.EXT) are not offered.
                known = sorted(n for n in SHIPPED_PROMPTS | self.prompts
                               if not (n.startswith("absence.") and n[8:] in self.users
                                       and n[8:] != self.own))
                params = {"name": message, "known": known}
                out.append(((*path, "message"), "unknown_announcement", params))
