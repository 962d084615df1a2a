"""Cross-reference checks on the raw document: what one field cannot tell on its own (an unknown
colleague, a `mobile` destination for a user without a mobile number, duplicate extensions, a
16th caller-ID exception...). Each finding is a (key path, reason) pair."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from b2bua.config.issues import KeyPath, format_path
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


def cross_check(raw: Mapping[str, Any], lines: Mapping[KeyPath, int]) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
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
    seen: dict[str, str] = {}
    for _, section, i, ext in entries:
        if ext in seen:
            out.append(
                ((section, i, "extension"), f"extension {ext!r} is already used by {seen[ext]}")
            )
        else:
            seen[ext] = f"{section}[{i}]"
    for section in ("trunks", "music", "announcements"):
        names: set[str] = set()
        for i, t in _tables(raw, section):
            name = _str(t, "name")
            if name is None:
                continue
            if name in names:
                out.append(((section, i, "name"), f"duplicate {section} name {name!r}"))
            names.add(name)
            if section == "music" and name in SHIPPED_MUSIC:
                out.append(
                    (
                        (section, i, "name"),
                        f"{name!r} is the shipped music class; choose another name",
                    )
                )

    # Server.
    server = raw.get("server")
    if isinstance(server, dict):
        listen = server.get("listen")
        if isinstance(listen, list) and any(
            isinstance(s, str) and s.startswith("tls:") for s in listen
        ):
            for key in ("tls_cert", "tls_key"):
                if key not in server:
                    out.append((("server", key), "required by the tls listener"))
        algos = server.get("auth_algorithms")
        if isinstance(algos, list) and len(set(map(str, algos))) != len(algos):
            out.append((("server", "auth_algorithms"), "an algorithm is listed twice"))

    # Trunks: credentials come in pairs, and registering needs them.
    for i, t in _tables(raw, "trunks"):
        has_user, has_password = "username" in t, "password" in t
        if has_user != has_password:
            missing = "password" if has_user else "username"
            out.append((("trunks", i, missing), "required with "
                        + ("username" if has_user else "password")))
        elif t.get("register") is True and not has_user:
            out.append((("trunks", i, "username"), "required when register = true"))

    # Registrar timers.
    reg = raw.get("registrar")
    if isinstance(reg, dict):
        lo, default, hi = (
            reg.get(k, d)
            for k, d in (("min_expires", 60), ("default_expires", 3600), ("max_expires", 3600))
        )
        if all(isinstance(v, int) for v in (lo, default, hi)):
            if lo > hi:
                out.append(
                    (
                        ("registrar", "min_expires"),
                        f"min_expires ({lo}) is above max_expires ({hi})",
                    )
                )
            elif not lo <= default <= hi:
                out.append(
                    (
                        ("registrar", "default_expires"),
                        f"default_expires ({default}) is not within min_expires..max_expires ({lo}..{hi})",
                    )
                )

    # System extensions: members are users.
    for i, t in _tables(raw, "system_extensions"):
        members = t.get("members")
        if isinstance(members, list):
            for j, member in enumerate(members):
                if isinstance(member, str) and member not in users:
                    out.append(
                        (
                            ("system_extensions", i, "members", j),
                            f"member {member!r} is not a user extension",
                        )
                    )
                elif members.index(member) != j:
                    out.append(
                        (
                            ("system_extensions", i, "members", j),
                            f"member {member!r} is listed twice",
                        )
                    )

    # Trunks: DIDs lead to an extension.
    for i, t in _tables(raw, "trunks"):
        did = t.get("did")
        if isinstance(did, dict):
            for number, target in did.items():
                if isinstance(target, str) and target not in users and target not in systems:
                    out.append(
                        (
                            ("trunks", i, "did", number),
                            f"extension {target!r} is neither a user nor a system extension",
                        )
                    )

    # Device usernames.
    usernames: dict[str, str] = {}
    for i, t in _tables(raw, "users"):
        for j, d in _tables(t, "devices"):
            name = _str(d, "username")
            if name is None:
                continue
            path = ("users", i, "devices", j, "username")
            if name in usernames:
                out.append((path, f"username {name!r} is already used by {usernames[name]}"))
            elif (name in users and users[name] != i) or name in systems:
                out.append((path, f"username {name!r} is another extension"))
            usernames.setdefault(name, format_path(path[:-1]))

    # Users.
    for i, t in _tables(raw, "users"):
        base: KeyPath = ("users", i)
        ext = _str(t, "extension")
        music_name = _str(t, "hold_music")
        if music_name is not None and music_name not in SHIPPED_MUSIC and music_name not in music:
            known = ", ".join(sorted(SHIPPED_MUSIC | music))
            out.append(
                ((*base, "hold_music"), f"unknown music class {music_name!r} (known: {known})")
            )
        exceptions = t.get("exceptions")
        if isinstance(exceptions, list) and len(exceptions) > MAX_EXCEPTIONS:
            out.append(
                (
                    (*base, "exceptions", MAX_EXCEPTIONS),
                    f"at most {MAX_EXCEPTIONS} caller-ID exceptions per user (this is number {MAX_EXCEPTIONS + 1})",
                )
            )

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
                    out.append(
                        (
                            (*sbase, "hours", j, "end"),
                            "start and end are equal (use 00:00 and 24:00 for a whole day)",
                        )
                    )
            for j, p in _tables(schedule, "exceptional"):
                pbase = (*sbase, "exceptional", j)
                dest((*pbase, "destination"), p.get("destination"), where="exceptional")
                has_start, has_end = "start" in p, "end" in p
                if has_start != has_end:
                    missing = "end" if has_start else "start"
                    out.append(
                        (
                            (*pbase, missing),
                            "a daily window needs both start and end (omit both for whole days)",
                        )
                    )
                elif has_start and p.get("start") == p.get("end"):
                    out.append(
                        ((*pbase, "end"), "start and end are equal (omit both for whole days)")
                    )
    return out


@dataclass(slots=True)
class _DestinationChecker:
    """Cross-reference checks of one user's destinations; appends to `out`."""

    out: list[tuple[KeyPath, str]]
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
            out.append(((*path, "kind"), "no_answer cannot ring the same devices again"))
        elif kind == "mobile" and not self.has_mobile:
            out.append(
                ((*path, "kind"), "destination 'mobile' needs the user's mobile number (not set)")
            )
        elif kind == "voicemail" and target is not None and target not in self.users:
            out.append(
                ((*path, "extension"), f"no user with extension {target!r} (voicemail is a user's)")
            )
        elif kind == "extension" and target is not None:
            if target in self.systems:
                out.append(
                    ((*path, "extension"), f'{target!r} is a system extension: use kind = "system"')
                )
            elif target not in self.users:
                out.append(((*path, "extension"), f"unknown colleague extension {target!r}"))
            elif target == self.own and value.get("voicemail") is not True:
                out.append(
                    (
                        (*path, "extension"),
                        "the user's own extension (use 'devices' or 'voicemail')",
                    )
                )
        elif kind == "system" and target is not None and target not in self.systems:
            hint = ' (it is a user: use kind = "extension")' if target in self.users else ""
            out.append(((*path, "extension"), f"unknown system extension {target!r}{hint}"))
        elif kind == "announcement":
            message = _str(value, "message")
            if message is not None and message not in SHIPPED_PROMPTS | self.prompts:
                known = ", ".join(sorted(SHIPPED_PROMPTS | self.prompts))
                out.append(
                    ((*path, "message"), f"unknown announcement {message!r} (known: {known})")
                )
