"""Routing explanations in words: trace steps and destinations in English or French.

`render(step, lang)` turns one `Step` (b2bua.rules.trace) into a sentence; `describe(destination,
lang)` says where a call goes. The English is what `b2bua trace` has always printed; the French
is what the dashboard shows a French office worker. Steps of the call engine's notes (ring
timeout, declined...) are worded here too, so a call record reads in one language.

A step whose code is unknown here (written by a newer version) is shown as its code and
parameters rather than dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from b2bua.config.lang import fr_date
from b2bua.rules.model import Destination, Step, TraceLine

__all__ = ["RULE_NAMES", "describe", "render", "render_steps", "trace_lines"]

_WEEKDAYS_EN = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # as %a gives them in the C locale
_MONTHS_EN = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS_FR = ("lun", "mar", "mer", "jeu", "ven", "sam", "dim")
_DAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS_FR = (
    "janv", "févr", "mars", "avr", "mai", "juin", "juil", "août", "sept", "oct", "nov", "déc",
)  # fmt: skip

_RULES = ("schedule_disabled", "exceptional", "exception", "office_hours", "forward", "closed")
RULE_NAMES: dict[str, dict[str, str]] = {
    "en": {r: r for r in _RULES},
    "fr": {
        "schedule_disabled": "horaire désactivé",
        "exceptional": "période exceptionnelle",
        "exception": "exception par appelant",
        "office_hours": "heures d'ouverture",
        "forward": "renvoi manuel",
        "closed": "hors horaires",
    },
}


# ---- destinations ---------------------------------------------------------------------------


def describe(destination: Mapping[str, Any] | Destination | None, lang: str) -> str:
    """Where a call goes, in words: `mobile (bounce)` / `mobile (avec annonce d'attente)`."""
    if destination is None:
        return "?"
    if lang != "fr" and not isinstance(destination, Destination):
        text = _describe_en(destination)
        if text is not None:
            return text
    d = destination if isinstance(destination, Destination) else _destination(destination)
    if d is None:
        return json.dumps(dict(destination), ensure_ascii=False)  # type: ignore[arg-type]
    if lang != "fr":
        return d.describe()
    bounce = " (avec annonce d'attente)" if d.bounce else ""
    kind = d.kind
    if kind == "devices":
        return "tous les appareils sonnent"
    if kind == "voicemail":
        return f"messagerie vocale de {d.extension}" if d.extension else "messagerie vocale"
    if kind == "extension":
        if d.voicemail:
            return f"messagerie vocale de {d.extension}"
        return f"poste {d.extension}"
    if kind == "mobile":
        return "mobile" + bounce
    if kind == "external":
        return f"numéro externe {d.number}" + bounce
    if kind == "system":
        return f"poste système {d.extension}"
    if kind == "busy":
        return "occupé (486)"
    return f"annonce « {d.message} »"


def _describe_en(d: Mapping[str, Any]) -> str | None:
    """`Destination.describe()` straight from the configuration shape (the common case of the
    English trace of every call); None for a shape it does not know."""
    kind = d.get("kind")
    bounce = " (bounce)" if d.get("bounce") else ""
    if kind == "devices":
        return "ring all devices"
    if kind == "voicemail":
        return f"voicemail of {d['extension']}" if d.get("extension") else "voicemail"
    if kind == "extension" and "extension" in d:
        return f"{'voicemail of' if d.get('voicemail') else 'ring extension'} {d['extension']}"
    if kind == "mobile":
        return "mobile" + bounce
    if kind == "external" and "number" in d:
        return f"external {d['number']}" + bounce
    if kind == "system" and "extension" in d:
        return f"system extension {d['extension']}"
    if kind == "busy":
        return "busy (486)"
    if kind == "announcement" and "message" in d:
        return f"announcement {d['message']!r}"
    return None


def _destination(data: Mapping[str, Any]) -> Destination | None:
    try:
        return Destination.from_config(dict(data))
    except (KeyError, ValueError, TypeError):
        return None


# ---- pieces of sentences --------------------------------------------------------------------


def _runs(indexes: Sequence[int], names: Sequence[str], none: str) -> str:
    """[0, 1, 2, 4] -> 'mon-wed,fri'."""
    out: list[str] = []
    values = sorted(set(indexes))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(names[values[i]] if i == j else f"{names[values[i]]}-{names[values[j]]}")
        i = j + 1
    return ",".join(out) if out else none


def _hours(r: Mapping[str, Any], lang: str) -> str:
    """`08:30-12:30 mon-fri` (plus ` in jan-mar`) / `08:30-12:30 lun-ven` (` en janv-mars`)."""
    days = [_WEEKDAYS_EN.index(d) for d in r["days"] if d in _WEEKDAYS_EN]
    months = r.get("months", "all")
    if lang == "fr":
        text = f"{r['start']}-{r['end']} {_runs(days, _WEEKDAYS_FR, 'aucun jour')}"
        if months != "all":
            text += " en " + _runs([m - 1 for m in months], _MONTHS_FR, "aucun mois")
        return text
    text = f"{r['start']}-{r['end']} {_runs(days, _WEEKDAYS_EN, 'no days')}"
    if months != "all":
        text += " in " + _runs([m - 1 for m in months], _MONTHS_EN, "no months")
    return text


def _period(p: Mapping[str, Any], lang: str) -> str:
    """`'Vacances annuelles' (12-20..01-05 08:00-17:00)` / `« Vacances annuelles » (20/12..05/01
    08:00-17:00)`."""
    window = f" {p['start']}-{p['end']}" if p.get("start") and p.get("end") else ""
    if lang == "fr":
        dates = ", ".join(fr_date(d) for d in p["dates"])
        return f"« {p['name']} » ({dates}{window})"
    return f"{p['name']!r} ({', '.join(p['dates'])}{window})"


def _stamp(p: Mapping[str, Any], lang: str) -> str:
    """`2026-11-23 08:05 Europe/Paris` / `le 23/11/2026 à 08:05`."""
    if lang == "fr":
        return f"le {fr_date(p['date'])} à {p['time']}"
    return f"{p['date']} {p['time']} {p['zone']}"


def _caller(p: Mapping[str, Any], lang: str) -> str:
    caller, number = p.get("caller", ""), p.get("number", "")
    if lang == "fr":
        if not number:
            return f"un appelant anonyme (« {caller} »)" if caller else "un appelant anonyme"
        return caller if number == caller else f"{caller} (soit {number})"
    if not number:
        return f"anonymous caller ({caller!r})" if caller else "anonymous caller"
    return str(caller) if number == caller else f"{caller} (as {number})"


# ---- the steps ------------------------------------------------------------------------------

_Render = Callable[[Mapping[str, Any]], str]


def _en_call(p: Mapping[str, Any]) -> str:
    return (
        f"call to {p['extension']} ({p['name']}) from {_caller(p, 'en')} "
        f"at {_DAYS_EN[p['weekday']]} {_stamp(p, 'en')} (UTC{p['offset']})"
    )


def _fr_call(p: Mapping[str, Any]) -> str:
    return (
        f"appel pour {p['extension']} ({p['name']}) de {_caller(p, 'fr')} "
        f"le {_DAYS_FR[p['weekday']]} {fr_date(p['date'])} à {p['time']} "
        f"({p['zone']}, UTC{p['offset']})"
    )


def _en_decision(p: Mapping[str, Any]) -> str:
    name = f" {p['rule_name']!r}" if p.get("rule_name") is not None else ""
    return f"decision: {p['rule']}{name} -> {describe(p['destination'], 'en')}"


def _fr_decision(p: Mapping[str, Any]) -> str:
    name = f" « {p['rule_name']} »" if p.get("rule_name") is not None else ""
    rule = RULE_NAMES["fr"].get(p["rule"], p["rule"])
    return f"décision : {rule}{name} -> {describe(p['destination'], 'fr')}"


def _exception_en(p: Mapping[str, Any]) -> str:
    return f"exception #{p['number']} (callers {p['callers']!r})"


def _exception_fr(p: Mapping[str, Any]) -> str:
    return f"exception n° {p['number']} (appelants « {p['callers']} »)"


_SKIPPED_EN = "not checked (an earlier rule applies)"
_SKIPPED_FR = "non consultée (une règle précédente s'applique)"

_EN: dict[str, _Render] = {
    "call": _en_call,
    "schedule_off": lambda p: (
        f"{'no schedule set' if p['reason'] == 'none' else 'schedule disabled'}: exceptional "
        "periods, caller-ID exceptions and office hours are not checked"
    ),
    "forward_set": lambda p: f"manual forward set: {describe(p['destination'], 'en')}",
    "ring_devices": lambda p: "no manual forward: ring all devices",
    "period_active": lambda p: (
        f"exceptional {_period(p, 'en')}: active at {_stamp(p, 'en')} -> "
        f"{describe(p['destination'], 'en')}"
    ),
    "period_inactive": lambda p: f"exceptional {_period(p, 'en')}: not active at {_stamp(p, 'en')}",
    "period_skipped": lambda p: f"exceptional {_period(p, 'en')}: {_SKIPPED_EN}",
    "periods_none": lambda p: "exceptional periods: none",
    "exception_match": lambda p: (
        f"{_exception_en(p)}: matches "
        f"({'every caller' if p['pattern'] is None else 'pattern ' + repr(p['pattern'])}) -> "
        f"{describe(p['destination'], 'en')}"
    ),
    "exception_no_match": lambda p: f"{_exception_en(p)}: does not match {p['caller_number']}",
    "exception_anonymous": lambda p: (
        f"{_exception_en(p)}: does not match (an anonymous caller matches only '*')"
    ),
    "exception_skipped": lambda p: f"{_exception_en(p)}: {_SKIPPED_EN}",
    "exceptions_none": lambda p: "caller-ID exceptions: none",
    "hours_skipped": lambda p: f"office hours: {_SKIPPED_EN}",
    "hours_none": lambda p: "office hours: none set",
    "hours_inside": lambda p: (
        f"office hours: inside {_hours(p['range'], 'en')}"
        + (f"; manual forward set -> {describe(p['forward'], 'en')}" if p.get("forward")
           else " -> ring all devices")
    ),
    "hours_outside": lambda p: (
        f"office hours: outside ({'; '.join(_hours(r, 'en') for r in p['ranges'])}) "
        f"at {_DAYS_EN[p['weekday']]} {p['time']}"
    ),
    "closed_unused": lambda p: f"closed destination ({describe(p['destination'], 'en')}): not used",
    "closed_applies": lambda p: f"closed destination applies: {describe(p['destination'], 'en')}",
    "decision": _en_decision,
    "system_call": lambda p: (
        f"call to {p['extension']} ({p['name']}) from {p['caller'] or 'anonymous caller'} "
        f"at {_DAYS_EN[p['weekday']]} {_stamp(p, 'en')}"
    ),
    "system_ring": lambda p: (
        f"{p['extension']} is a system extension ({p['kind'].replace('_', ' ')}): no schedule, "
        f"ring its members {', '.join(p['members'])}"
    ),
    # The call engine's notes (b2bua.calls.records derives them from its lines).
    "unavailable": lambda p: f"{p['what']} not available",
    "ring_group": lambda p: f"ring group {p['extension']}",
    "no_device": lambda p: "no device registered",
    "declined": lambda p: f"declined by {p['by']}",
    "media_backend": lambda p: f"media backend: {p['why']}",
    "ring_timeout": lambda p: "ring timeout",
    "dtmf": lambda p: f"DTMF {p['digits']}",
    "busy_by_rule": lambda p: "busy by rule",
    "no_such_number": lambda p: "no such number",
    "no_number": lambda p: f"{p['kind']} destination without a number",
    "no_device_to_ring": lambda p: "no device",
    "no_device_responded": lambda p: "no device responded",
    "declined_all": lambda p: "declined",
    "all_busy": lambda p: "every device busy",
    "all_failed": lambda p: "every branch failed"
    + (f" ({p['statuses']})" if p.get("statuses") else ""),
    "media_failure": lambda p: "media failure",
    "no_trunk": lambda p: "no trunk configured",
    "no_free_line": lambda p: "no free line",
    "no_trunk_for_number": lambda p: "no trunk takes this number",
    "trunk_failover": lambda p: f"trunk {p['trunk']}: {p['what']}, trying trunk {p['next']}",
    "trunk_failed": lambda p: f"trunk {p['trunk']}: {p['what']}, no other trunk",
    "trunk_auth_refused": lambda p: (
        f"trunk {p['trunk']} refused our credentials ({p['response']})"),
    "destination_unavailable": lambda p: f"{p['what']} unavailable",
    "to_voicemail": lambda p: f"voicemail of {p['extension']}",
    "to_announcement": lambda p: f"announcement {p['message']}",
    "bounce_to": lambda p: f"bounce to {p['number']}",
    "bounce_unanswered": lambda p: "bounce not answered: voicemail",
    "media_problem": lambda p: f"media: {p['reason']}",
    "woken_by_push": lambda p: f"{p['count']} device(s) woken by push",
    "woke_up": lambda p: f"{p['device']} woke up",
    "none_woke_up": lambda p: "no device woke up",
    "transferred": lambda p: f"transferred by {p['by']} to {p['to']}",
    "transfer_answered": lambda p: f"transfer answered by {p['by']}",
    "transfer_failed": lambda p: f"transfer failed: {p['why']}",
    "picked_up": lambda p: f"picked up by {p['by']}",
    "attended_transfer": lambda p: f"attended transfer to {p['to']}",
    "joined_call": lambda p: (f"transferred by {p['by']}: connected to {p['to']}" if "to" in p
                              else f"transferred by {p['by']}: joined call {p['call']}"),
    "session_expired": lambda p: f"session expired on leg {p['leg']}",
    "rtp_timeout": lambda p: f"RTP timeout on leg {p['leg']}",
    "reinvite_refused": lambda p: f"re-INVITE refused ({p['status']})",
    "reinvite_unanswered": lambda p: "re-INVITE not answered",
    "replaced": lambda p: f"replaced: {p['old']} by {p['by']}",
    "note": lambda p: str(p["text"]),
}

_FR: dict[str, _Render] = {
    "call": _fr_call,
    "schedule_off": lambda p: (
        f"{'aucun horaire' if p['reason'] == 'none' else 'horaire désactivé'} : les périodes "
        "exceptionnelles, les exceptions par appelant et les heures d'ouverture ne sont pas "
        "consultées"
    ),
    "forward_set": lambda p: f"renvoi manuel actif : {describe(p['destination'], 'fr')}",
    "ring_devices": lambda p: "pas de renvoi manuel : tous les appareils sonnent",
    "period_active": lambda p: (
        f"période exceptionnelle {_period(p, 'fr')} : en cours {_stamp(p, 'fr')} -> "
        f"{describe(p['destination'], 'fr')}"
    ),
    "period_inactive": lambda p: (
        f"période exceptionnelle {_period(p, 'fr')} : pas en cours {_stamp(p, 'fr')}"
    ),
    "period_skipped": lambda p: f"période exceptionnelle {_period(p, 'fr')} : {_SKIPPED_FR}",
    "periods_none": lambda p: "périodes exceptionnelles : aucune",
    "exception_match": lambda p: (
        f"{_exception_fr(p)} : correspond "
        f"({'tous les appelants' if p['pattern'] is None else '« ' + p['pattern'] + ' »'}) -> "
        f"{describe(p['destination'], 'fr')}"
    ),
    "exception_no_match": lambda p: (
        f"{_exception_fr(p)} : ne correspond pas à {p['caller_number']}"
    ),
    "exception_anonymous": lambda p: (
        f"{_exception_fr(p)} : ne correspond pas (un appelant anonyme ne correspond qu'à « * »)"
    ),
    "exception_skipped": lambda p: f"{_exception_fr(p)} : {_SKIPPED_FR}",
    "exceptions_none": lambda p: "exceptions par appelant : aucune",
    "hours_skipped": lambda p: (
        "heures d'ouverture : non consultées (une règle précédente s'applique)"
    ),
    "hours_none": lambda p: "heures d'ouverture : aucune",
    "hours_inside": lambda p: (
        f"heures d'ouverture : dans la plage {_hours(p['range'], 'fr')}"
        + (f" ; renvoi manuel actif -> {describe(p['forward'], 'fr')}" if p.get("forward")
           else " -> tous les appareils sonnent")
    ),
    "hours_outside": lambda p: (
        f"heures d'ouverture : en dehors ({' ; '.join(_hours(r, 'fr') for r in p['ranges'])}) "
        f"le {_DAYS_FR[p['weekday']]} à {p['time']}"
    ),
    "closed_unused": lambda p: (
        f"destination hors horaires ({describe(p['destination'], 'fr')}) : non utilisée"
    ),
    "closed_applies": lambda p: f"destination hors horaires : {describe(p['destination'], 'fr')}",
    "decision": _fr_decision,
    "system_call": lambda p: (
        f"appel pour {p['extension']} ({p['name']}) de "
        f"{p['caller'] or 'un appelant anonyme'} le {_DAYS_FR[p['weekday']]} "
        f"{fr_date(p['date'])} à {p['time']} ({p['zone']})"
    ),
    "system_ring": lambda p: (
        f"{p['extension']} est un poste système (groupe d'appel) : pas d'horaire, ses membres "
        f"{', '.join(p['members'])} sonnent"
    ),
    "unavailable": lambda p: f"{p['what']} indisponible",
    "ring_group": lambda p: f"groupe d'appel {p['extension']}",
    "no_device": lambda p: "aucun appareil connecté",
    "declined": lambda p: f"refusé par {p['by']}",
    "media_backend": lambda p: f"média : {p['why']}",
    "ring_timeout": lambda p: "pas de réponse dans le délai",
    "dtmf": lambda p: f"touches DTMF {p['digits']}",
    "busy_by_rule": lambda p: "occupé par une règle",
    "no_such_number": lambda p: "numéro inconnu",
    "no_number": lambda p: f"destination {p['kind']} sans numéro",
    "no_device_to_ring": lambda p: "aucun appareil à faire sonner",
    "no_device_responded": lambda p: "aucun appareil n'a répondu",
    "declined_all": lambda p: "refusé",
    "all_busy": lambda p: "tous les appareils sont occupés",
    "all_failed": lambda p: "aucun appareil n'a pu être joint"
    + (f" ({p['statuses']})" if p.get("statuses") else ""),
    "media_failure": lambda p: "échec du média",
    "no_trunk": lambda p: "aucun opérateur (trunk) configuré",
    "no_free_line": lambda p: "aucune ligne libre",
    "no_trunk_for_number": lambda p: "aucun opérateur ne prend ce numéro",
    "trunk_failover": lambda p: (
        f"opérateur {p['trunk']} : {p['what']}, essai par l'opérateur {p['next']}"),
    "trunk_failed": lambda p: f"opérateur {p['trunk']} : {p['what']}, aucun autre opérateur",
    "trunk_auth_refused": lambda p: (
        f"l'opérateur {p['trunk']} a refusé nos identifiants ({p['response']})"),
    "destination_unavailable": lambda p: f"{p['what']} indisponible",
    "to_voicemail": lambda p: f"messagerie vocale de {p['extension']}",
    "to_announcement": lambda p: f"annonce « {p['message']} »",
    "bounce_to": lambda p: f"appel transféré avec annonce vers {p['number']}",
    "bounce_unanswered": lambda p: "pas de réponse après l'annonce : messagerie vocale",
    "media_problem": lambda p: f"problème de média : {p['reason']}",
    "woken_by_push": lambda p: f"{p['count']} appareil(s) réveillé(s) par notification",
    "woke_up": lambda p: f"{p['device']} s'est réveillé",
    "none_woke_up": lambda p: "aucun appareil ne s'est réveillé",
    "transferred": lambda p: f"transféré par {p['by']} vers {p['to']}",
    "transfer_answered": lambda p: f"transfert pris par {p['by']}",
    "transfer_failed": lambda p: f"transfert échoué : {p['why']}",
    "picked_up": lambda p: f"intercepté par {p['by']}",
    "attended_transfer": lambda p: f"transfert supervisé vers {p['to']}",
    "joined_call": lambda p: (f"transféré par {p['by']} : mis en relation avec {p['to']}"
                              if "to" in p
                              else f"transféré par {p['by']} : rejoint l'appel {p['call']}"),
    "session_expired": lambda p: (
        f"session expirée côté {'appelant' if p['leg'] == 'a' else 'appelé'}"),
    "rtp_timeout": lambda p: (
        f"plus de son (RTP) côté {'appelant' if p['leg'] == 'a' else 'appelé'}"),
    "reinvite_refused": lambda p: f"re-INVITE refusé ({p['status']})",
    "reinvite_unanswered": lambda p: "re-INVITE sans réponse",
    "replaced": lambda p: f"remplacé : {p['old']} par {p['by']}",
    "note": lambda p: str(p["text"]),
}

_BY_LANG = {"en": _EN, "fr": _FR}


def render(step: Step, lang: str) -> str:
    """One step in words ("en" or "fr"; anything else is English)."""
    table = _BY_LANG.get(lang, _EN)
    fn = table.get(step.code)
    if fn is None:
        return f"{step.code} {json.dumps(step.params, ensure_ascii=False, sort_keys=True)}"
    try:
        return fn(step.params)
    except (KeyError, TypeError, ValueError, IndexError):  # parameters of another version
        return f"{step.code} {json.dumps(step.params, ensure_ascii=False, sort_keys=True)}"


def render_steps(steps: Iterable[Step], lang: str) -> tuple[str, ...]:
    return tuple(render(step, lang) for step in steps)


def trace_lines(steps: Iterable[Step]) -> tuple[TraceLine, ...]:
    """The English lines of `steps`, each keeping its step."""
    out = []
    for step in steps:
        line = TraceLine(render(step, "en"))
        line.step = step
        out.append(line)
    return tuple(out)
