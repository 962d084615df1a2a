"""What each configuration problem and warning says, in English and in French.

Every check names its finding with a stable code and parameters (`Problem("hour_out_of_range",
value="25:00", hour=25)`); this catalogue turns them into a sentence. The English sentence is
what `b2bua check` prints after `FILE:LINE: field:`; the API answers in the language of the
request (docs/api.md). A code never changes meaning; a new finding gets a new code.

Parameters are plain JSON values. `_first` (0 or 1) is added while rendering: the number of the
first row, for the few messages that name another field (`users[0]` in a file check, `users[1]`
on the dashboard).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, cast

from b2bua.config.issues import format_path
from b2bua.config.lang import Lang, fr_date, quote

__all__ = ["MESSAGES", "Problem", "fill", "render"]

Template = str | Callable[[Mapping[str, Any]], str]


class Problem(ValueError):
    """A value refused with a stable code; `str()` is the English sentence (what pydantic and
    `b2bua check` show)."""

    def __init__(self, code: str, **params: Any) -> None:
        self.code = code
        self.params = params
        super().__init__(render(code, params, "en"))


def render(code: str, params: Mapping[str, Any], lang: Lang, *, first: int = 0) -> str:
    """The sentence for `code` with `params` in `lang`. An unknown code (a check added without a
    message) falls back to its English `reason` parameter, else to the code itself."""
    entry = MESSAGES.get(code)
    if entry is None:
        return str(params.get("reason", code))
    return fill(entry[lang], ChainMap({"_first": first}, cast("MutableMapping[str, Any]", params)), code)


def fill(template: Template, values: Mapping[str, Any], code: str) -> str:
    """`template` with `values`; parameters that do not fit (a finding from another version)
    give its English reason, else its code, rather than an error."""
    try:
        if callable(template):
            return template(values)
        return template.format_map(values)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return str(values.get("reason", code))


# ---- helpers for the templates ------------------------------------------------------------


def _q(lang: Lang) -> Callable[[Any], str]:
    return lambda value: quote(value, lang)


def _got(p: Mapping[str, Any], lang: Lang) -> str:
    """` (got 'x')` / ` (reçu : x)` when the refused value is a scalar worth showing."""
    if "got" not in p:
        return ""
    value = p["got"]
    if lang == "en":
        return f" (got {value!r})"
    return f" (reçu : {value})"


def _one_of(values: Sequence[Any], lang: Lang) -> str:
    """`'a', 'b' or 'c'` / `« a », « b » ou « c »`."""
    items = [quote(v, lang) for v in values]
    if len(items) <= 1:
        return "".join(items)
    word = " or " if lang == "en" else " ou "
    return ", ".join(items[:-1]) + word + items[-1]


def _path(p: Mapping[str, Any], key: str) -> str:
    value = p.get(key)
    if isinstance(value, list | tuple):
        return format_path(value, first=int(p.get("_first", 0)))
    return str(value)


def _fr_value(value: Any) -> str:
    return fr_date(str(value))


def _both(en: Template, fr: Template) -> dict[Lang, Template]:
    return {"en": en, "fr": fr}


q_en, q_fr = _q("en"), _q("fr")

MESSAGES: dict[str, dict[Lang, Template]] = {
    # ---- shapes and types (the models) -----------------------------------------------------
    "required": _both("required field missing", "champ obligatoire manquant"),
    "unknown_key": _both(
        lambda p: f"unknown key {p['key']!r}"
        + (f" (did you mean {p['suggestion']!r}?)" if p.get("suggestion") else ""),
        lambda p: f"« {p['key']} » n'est pas un réglage"
        + (f" (vouliez-vous dire « {p['suggestion']} » ?)" if p.get("suggestion") else ""),
    ),
    "expected_table": _both(
        "expected a table, got {value!r}", "attendu : un groupe de réglages (une table)"
    ),
    "expected_text": _both(
        lambda p: "expected a valid string" + _got(p, "en"),
        lambda p: "attendu : un texte" + _got(p, "fr"),
    ),
    "expected_integer": _both(
        lambda p: "expected a valid integer" + _got(p, "en"),
        lambda p: "attendu : un nombre entier" + _got(p, "fr"),
    ),
    "expected_number": _both(
        lambda p: "expected a valid number" + _got(p, "en"),
        lambda p: "attendu : un nombre" + _got(p, "fr"),
    ),
    "expected_boolean": _both(
        lambda p: "expected a valid boolean" + _got(p, "en"),
        lambda p: "attendu : oui ou non (true ou false)" + _got(p, "fr"),
    ),
    "expected_list": _both(
        lambda p: "expected a list" + _got(p, "en"),
        lambda p: "attendu : une liste" + _got(p, "fr"),
    ),
    "empty": _both("must not be empty", "ne doit pas être vide"),
    "too_few": _both(
        lambda p: f"needs at least {p['min']} item{'s' if p['min'] != 1 else ''}",
        lambda p: f"il en faut au moins {p['min']}",
    ),
    "too_many": _both("at most {max} items", "{max} au plus"),
    "too_long": _both("at most {max} characters", "{max} caractères au plus"),
    "text_too_short": _both("at least {min} characters", "{min} caractères au moins"),
    "too_small": _both(
        lambda p: f"expected greater than or equal to {p['min']}" + _got(p, "en"),
        lambda p: f"au moins {p['min']}" + _got(p, "fr"),
    ),
    "too_large": _both(
        lambda p: f"expected less than or equal to {p['max']}" + _got(p, "en"),
        lambda p: f"au plus {p['max']}" + _got(p, "fr"),
    ),
    "not_one_of": _both(
        lambda p: f"expected {_one_of(p['expected'], 'en')}" + _got(p, "en"),
        lambda p: f"attendu : {_one_of(p['expected'], 'fr')}" + _got(p, "fr"),
    ),
    "invalid_format": _both(
        lambda p: f"expected {p['expected_en']}" + _got(p, "en"),
        lambda p: f"attendu : {p['expected_fr']}" + _got(p, "fr"),
    ),
    "invalid": _both("{reason}", "valeur refusée : {reason}"),
    "destination_kind_missing": _both(
        lambda p: f"a destination needs a kind (one of: {', '.join(p['expected'])})",
        lambda p: f"une destination doit avoir un type (kind : {', '.join(p['expected'])})",
    ),
    "unknown_destination_kind": _both(
        lambda p: f"unknown destination kind {p['kind']!r} "
        f"(expected one of: {', '.join(p['expected'])})",
        lambda p: f"type de destination inconnu « {p['kind']} » "
        f"(attendu : {', '.join(p['expected'])})",
    ),
    # ---- single values (b2bua.config.fields, b2bua.config.timespec) ---------------------
    "invalid_extension": _both(
        "{value!r} is not an extension (letters, digits or _, at most 32)",
        "« {value} » n'est pas un numéro de poste (chiffres, lettres ou _, 32 au plus)",
    ),
    "invalid_phone_number": _both(
        "{value!r} is not a phone number", "« {value} » n'est pas un numéro de téléphone"
    ),
    "callers_empty": _both(
        "empty; use '*' for every caller", "vide : mettez « * » pour tous les appelants"
    ),
    "callers_separator": _both(
        "{token!r}: separate several patterns with spaces",
        "« {token} » : séparez plusieurs numéros par des espaces",
    ),
    "callers_star_position": _both(
        "{token!r}: '*' is only allowed at the end of a pattern",
        "« {token} » : « * » n'est permis qu'à la fin (comme dans 06*)",
    ),
    "callers_invalid": _both(
        "{token!r} is not a number or a prefix such as 06*",
        "« {token} » n'est ni un numéro ni un début de numéro comme 06*",
    ),
    "invalid_timezone": _both(
        "unknown time zone {value!r} (e.g. Europe/Paris)",
        "fuseau horaire inconnu « {value} » (par exemple Europe/Paris)",
    ),
    "invalid_time": _both(
        "{value!r} is not a time (expected HH:MM, e.g. 08:30)",
        "« {value} » n'est pas une heure (HH:MM, par exemple 08:30)",
    ),
    "hour_out_of_range": _both(
        "{value!r}: hour {hour} is not in 00..23",
        "« {value} » : l'heure {hour} n'existe pas (00 à 23)",
    ),
    "minute_out_of_range": _both(
        "{value!r}: minute {minute} is not in 00..59",
        "« {value} » : la minute {minute} n'existe pas (00 à 59)",
    ),
    "invalid_date": _both(
        "{value!r} is not a date (expected MM-DD or YYYY-MM-DD)",
        lambda p: f"« {p['value']} » n'est pas une date (JJ/MM/AAAA, ou JJ/MM pour chaque année)",
    ),
    "month_out_of_range": _both(
        lambda p: (f"{p['value']!r}: " if "value" in p else "") + f"month {p['month']} is not in 1..12",
        lambda p: (f"« {_fr_value(p['value'])} » : " if "value" in p else "")
        + f"le mois {p['month']} n'existe pas (1 à 12)",
    ),
    "day_out_of_range": _both(
        "{value!r}: day {day} does not exist in month {month}",
        lambda p: f"« {_fr_value(p['value'])} » : le jour {p['day']} n'existe pas "
        f"dans le mois {p['month']}",
    ),
    "date_range_mixed": _both(
        "{value!r}: both ends of a range must be yearly (MM-DD) or both dated (YYYY-MM-DD)",
        lambda p: f"« {_fr_value(p['value'])} » : les deux bouts d'une période sont soit "
        "chaque année (JJ/MM), soit datés (JJ/MM/AAAA)",
    ),
    "date_range_reversed": _both(
        "{value!r}: the range ends before it starts",
        lambda p: f"« {_fr_value(p['value'])} » : la période finit avant de commencer",
    ),
    "days_not_list": _both(
        'expected a list of days such as ["mon", "tue"], got {value!r}',
        'attendu : une liste de jours comme ["mon", "tue"] (reçu : {value})',
    ),
    "unknown_weekday": _both(
        lambda p: f"unknown weekday {p['value']!r} (expected {', '.join(p['expected'])})",
        lambda p: f"jour inconnu « {p['value']} » (attendu : {', '.join(p['expected'])})",
    ),
    "months_not_list": _both(
        'expected "all" or a list of months 1..12, got {value!r}',
        'attendu : "all" (tous les mois) ou une liste de mois de 1 à 12 (reçu : {value})',
    ),
    "month_not_number": _both(
        "month {value!r} is not a number 1..12",
        "le mois « {value} » n'est pas un nombre de 1 à 12",
    ),
    "expected_path": _both(
        "expected a path (string), got {value!r}", "attendu : un chemin de fichier (texte)"
    ),
    "expected_network": _both(
        'expected a network such as "192.0.2.0/24", got {value!r}',
        'attendu : un réseau comme "192.0.2.0/24" (reçu : {value})',
    ),
    "invalid_network": _both(
        "{value!r} is not an address or a network (CIDR)",
        "« {value} » n'est ni une adresse ni un réseau (CIDR)",
    ),
    "network_host_bits": _both(
        "{value!r} has host bits set; did you mean {suggestion}?",
        "« {value} » a des bits d'hôte : vouliez-vous dire {suggestion} ?",
    ),
    "invalid_address": _both(
        "{value!r} is not HOST:PORT (IPv6 as [::1]:5060)",
        "« {value} » n'est pas de la forme HÔTE:PORT (IPv6 : [::1]:5060)",
    ),
    "invalid_ipv6": _both(
        "{value!r}: {host!r} is not an IPv6 address",
        "« {value} » : « {host} » n'est pas une adresse IPv6",
    ),
    "port_out_of_range": _both(
        "{value!r}: port {port} is not in 1..65535",
        "« {value} » : le port {port} n'existe pas (1 à 65535)",
    ),
    "expected_address": _both(
        'expected "HOST:PORT", got {value!r}', 'attendu : "HÔTE:PORT" (reçu : {value})'
    ),
    "expected_listen": _both(
        'expected "TRANSPORT:HOST:PORT", got {value!r}',
        'attendu : "TRANSPORT:HÔTE:PORT" (reçu : {value})',
    ),
    "invalid_listen": _both(
        "{value!r}: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT",
        "« {value} » : attendu udp:HÔTE:PORT, tcp:HÔTE:PORT ou tls:HÔTE:PORT",
    ),
    "expected_port_range": _both(
        'expected "FIRST-LAST" such as "20000-29999", got {value!r}',
        'attendu : "PREMIER-DERNIER" comme "20000-29999" (reçu : {value})',
    ),
    "port_range_bounds": _both(
        "{value!r}: need 1024 <= FIRST < LAST <= 65535",
        "« {value} » : il faut 1024 <= PREMIER < DERNIER <= 65535",
    ),
    "invalid_apple_id": _both(
        "{value!r} is not a 10-character Apple identifier (such as ABC123DEFG)",
        "« {value} » n'est pas un identifiant Apple de 10 caractères (comme ABC123DEFG)",
    ),
    # ---- cross-references (b2bua.config.checks) -------------------------------------------
    "duplicate_extension": _both(
        lambda p: f"extension {p['extension']!r} is already used by {_path(p, 'other')}",
        lambda p: f"le poste « {p['extension']} » est déjà pris par {_path(p, 'other')}",
    ),
    "duplicate_name": _both(
        "duplicate {section} name {name!r}", "le nom « {name} » est déjà pris ({section})"
    ),
    "shipped_music_name": _both(
        "{name!r} is the shipped music class; choose another name",
        "« {name} » est la musique fournie : choisissez un autre nom",
    ),
    "required_with": _both("required with {other}", "obligatoire avec {other}"),
    "required_to_register": _both(
        "required when register = true", "obligatoire quand register = true"
    ),
    "invalid_store_url": _both(
        "{value!r} is not a PostgreSQL URL (postgresql://user:password@host:port/database)",
        "« {value} » n'est pas une URL PostgreSQL (postgresql://utilisateur:mot-de-passe@hôte:port/base)",
    ),
    "invalid_dial_prefix": _both(
        "{value!r} is not a dialling prefix (digits, * and #, a leading +)",
        "« {value} » n'est pas un préfixe de numérotation (chiffres, * et #, un + au début)",
    ),
    "tls_required": _both(
        "required by the tls listener", "obligatoire avec une écoute tls"
    ),
    "duplicate_algorithm": _both(
        "an algorithm is listed twice", "un algorithme est cité deux fois"
    ),
    "expires_order": _both(
        "min_expires ({min}) is above max_expires ({max})",
        "min_expires ({min}) dépasse max_expires ({max})",
    ),
    "default_expires_range": _both(
        "default_expires ({default}) is not within min_expires..max_expires ({min}..{max})",
        "default_expires ({default}) n'est pas entre min_expires et max_expires ({min} à {max})",
    ),
    "member_unknown": _both(
        "member {member!r} is not a user extension",
        "le membre « {member} » n'est pas le poste d'un utilisateur",
    ),
    "member_twice": _both(
        "member {member!r} is listed twice", "le membre « {member} » est cité deux fois"
    ),
    "invalid_domain": _both(
        "{value!r} is not a domain name (such as acme.example)",
        "« {value} » n'est pas un nom de domaine (comme acme.example)",
    ),
    "duplicate_domain": _both(
        lambda p: f"domain {p['domain']!r} is already the domain of {_path(p, 'other')}",
        lambda p: f"le domaine « {p['domain']} » est déjà celui de {_path(p, 'other')}",
    ),
    "did_taken": _both(
        lambda p: f"number {p['number']!r} is already a DID of another tenant "
        f"({_path(p, 'other')})",
        lambda p: f"le numéro « {p['number']} » est déjà un numéro d'appel d'une autre entreprise "
        f"({_path(p, 'other')})",
    ),
    "trunk_name_at": _both(
        "{name!r}: a trunk name has no '@' when tenants are declared",
        "« {name} » : un nom de trunk ne contient pas de « @ » quand des entreprises sont déclarées",
    ),
    "tenant_user_limit": _both(
        "{count} users for a limit of {max}",
        "{count} utilisateurs pour une limite de {max}",
    ),
    "did_unknown_extension": _both(
        "extension {extension!r} is neither a user nor a system extension",
        "le poste « {extension} » n'est ni un utilisateur ni un poste système",
    ),
    "username_taken": _both(
        lambda p: f"username {p['username']!r} is already used by {_path(p, 'other')}",
        lambda p: f"l'identifiant « {p['username']} » est déjà pris par {_path(p, 'other')}",
    ),
    "username_is_extension": _both(
        "username {username!r} is another extension",
        "l'identifiant « {username} » est le numéro d'un autre poste",
    ),
    "unknown_music": _both(
        lambda p: f"unknown music class {p['name']!r} (known: {', '.join(p['known'])})",
        lambda p: f"musique inconnue « {p['name']} » (disponibles : {', '.join(p['known'])})",
    ),
    "too_many_exceptions": _both(
        "at most {max} caller-ID exceptions per user (this is number {number})",
        "{max} exceptions au plus par utilisateur (celle-ci est la n° {number})",
    ),
    "no_answer_devices": _both(
        "no_answer cannot ring the same devices again",
        "sans réponse, l'appel ne peut pas refaire sonner les mêmes appareils",
    ),
    "mobile_not_set": _both(
        "destination 'mobile' needs the user's mobile number (not set)",
        "la destination « mobile » demande le numéro de mobile de l'utilisateur (non renseigné)",
    ),
    "voicemail_unknown_user": _both(
        "no user with extension {extension!r} (voicemail is a user's)",
        "aucun utilisateur au poste « {extension} » (une messagerie appartient à un utilisateur)",
    ),
    "extension_is_system": _both(
        "{extension!r} is a system extension: use kind = \"system\"",
        "« {extension} » est un poste système : choisissez la destination « poste système »",
    ),
    "unknown_colleague": _both(
        "unknown colleague extension {extension!r}", "poste de collègue inconnu « {extension} »"
    ),
    "own_extension": _both(
        "the user's own extension (use 'devices' or 'voicemail')",
        "c'est le poste de l'utilisateur lui-même (choisissez « appareils » ou « messagerie »)",
    ),
    "unknown_system_extension": _both(
        lambda p: f"unknown system extension {p['extension']!r}"
        + (' (it is a user: use kind = "extension")' if p.get("is_user") else ""),
        lambda p: f"poste système inconnu « {p['extension']} »"
        + (" (c'est un utilisateur : choisissez « collègue »)" if p.get("is_user") else ""),
    ),
    "unknown_announcement": _both(
        lambda p: f"unknown announcement {p['name']!r} (known: {', '.join(p['known'])})",
        lambda p: f"annonce inconnue « {p['name']} » (disponibles : {', '.join(p['known'])})",
    ),
    "hours_equal": _both(
        "start and end are equal (use 00:00 and 24:00 for a whole day)",
        "le début et la fin sont égaux (00:00 et 24:00 pour toute la journée)",
    ),
    "window_incomplete": _both(
        "a daily window needs both start and end (omit both for whole days)",
        "une plage horaire demande un début et une fin (aucun des deux pour des journées entières)",
    ),
    "window_equal": _both(
        "start and end are equal (omit both for whole days)",
        "le début et la fin sont égaux (aucun des deux pour des journées entières)",
    ),
    # ---- warnings (b2bua.rules.warnings) ---------------------------------------------------
    "no_devices": _both(
        "no devices: calls that ring devices go straight to no_answer",
        "aucun appareil : les appels qui devraient faire sonner vont directement à la "
        "destination « sans réponse »",
    ),
    "exceptions_inactive": _both(
        "caller-ID exceptions never apply while the schedule is disabled or absent",
        "les exceptions par appelant ne s'appliquent pas tant que l'horaire est désactivé",
    ),
    "exception_unreachable": _both(
        lambda p: f"never applies: exception #{p['star']} ('*') matches every caller first",
        lambda p: f"Cette exception ne s'appliquera jamais : l'exception n° {p['star']} (« * ») "
        "prend tous les appels avant elle",
    ),
    "short_patterns": _both(
        "short patterns separated by spaces: spaces separate patterns, so write a number "
        "without spaces",
        "des numéros courts séparés par des espaces : l'espace sépare les numéros, écrivez un "
        "numéro sans espaces",
    ),
    "no_office_hours": _both(
        "schedule enabled with no office hours: always closed",
        "horaire activé sans heures d'ouverture : toujours fermé",
    ),
    "exceptional_inactive": _both(
        "exceptional periods never apply: schedule disabled",
        "les périodes exceptionnelles ne s'appliquent pas : l'horaire est désactivé",
    ),
    "hours_no_days": _both(
        "office hours with no days never apply",
        "Cette plage n'a aucun jour : elle ne s'appliquera jamais",
    ),
    "hours_no_months": _both(
        "office hours with no months never apply",
        "Cette plage n'a aucun mois : elle ne s'appliquera jamais",
    ),
    "hours_over_midnight": _both(
        "this range runs past midnight ({start} -> {end} the next day): is that meant?",
        "Cette plage passe minuit ({start} -> {end} le lendemain) : est-ce voulu ?",
    ),
    "window_over_midnight": _both(
        "this daily window runs past midnight ({start} -> {end} the next day): is that meant?",
        "Cette plage horaire passe minuit ({start} -> {end} le lendemain) : est-ce voulu ?",
    ),
    "date_past": _both(
        "{value} is in the past (today is {today})",
        lambda p: f"{_fr_value(p['value'])} est passé (nous sommes le {_fr_value(p['today'])})",
    ),
    "period_hidden": _both(
        lambda p: "never applies: fully covered by earlier period(s) "
        + ", ".join(repr(n) for n in p["names"]),
        lambda p: "Cette période ne s'appliquera jamais : elle est couverte par "
        + ", ".join(f"« {n} »" for n in p["names"]),
    ),
    "file_missing": _both(
        "file not found: {file}", "fichier introuvable : {name}"
    ),
}
