"""What the API says to people, in English and in French: the messages of its own errors and of
the issues it finds in requests (query parameters, uploads, keys a user may not change). The
issues found in settings come from the configuration's checks and are worded by
b2bua.config.messages; `text()` looks in both catalogues.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

from b2bua.config.lang import Lang
from b2bua.config.messages import MESSAGES as CONFIG_MESSAGES
from b2bua.config.messages import Template, fill
from b2bua.config.messages import render as render_config

__all__ = ["MESSAGES", "text"]


def _both(en: Template, fr: Template) -> dict[Lang, Template]:
    return {"en": en, "fr": fr}


MESSAGES: dict[str, dict[Lang, Template]] = {
    # ---- whole-request errors (the `message` of an error) ----------------------------------
    "sign_in": _both(
        "sign in first (or the session expired)",
        "connectez-vous d'abord (ou la session a expiré)",
    ),
    "bad_credentials": _both("wrong login or password", "identifiant ou mot de passe incorrect"),
    "wrong_current_password": _both(
        "the current password is wrong", "le mot de passe actuel est incorrect"
    ),
    "throttled": _both(
        "too many failed attempts; try again in {seconds} s",
        "trop d'essais manqués : réessayez dans {seconds} s",
    ),
    "cross_origin": _both(
        "cross-origin request refused", "requête refusée : elle vient d'un autre site"
    ),
    "csrf_missing": _both(
        "missing or wrong X-CSRF-Token header",
        "en-tête X-CSRF-Token absent ou faux : rechargez la page",
    ),
    "admins_only": _both("administrators only", "réservé aux administrateurs"),
    "own_extension_only": _both(
        "you can only manage your own extension",
        "vous ne pouvez gérer que votre propre poste",
    ),
    "no_tenant": _both("no tenant with domain {domain}", "aucune entreprise au domaine {domain}"),
    "platform_admin_only": _both(
        "only the platform administrator (admin) manages tenants",
        "seul l'administrateur de la plateforme (admin) gère les entreprises",
    ),
    "tenant_exists": _both(
        "a tenant or the platform already uses domain {domain}",
        "une entreprise ou la plateforme utilise déjà le domaine {domain}",
    ),
    "tenant_from_file": _both(
        "tenant {domain} is declared in the configuration file; remove it there",
        "l'entreprise {domain} est déclarée dans le fichier de configuration : retirez-la là",
    ),
    "no_user": _both("no user with extension {extension}", "aucun utilisateur au poste {extension}"),
    "no_device": _both("no device {n}", "pas d'appareil n° {n}"),
    "no_music": _both("no hold-music class {name!r}", "pas de musique d'attente « {name} »"),
    "no_upload": _both(
        "no uploaded hold-music class {name!r}", "pas de musique d'attente envoyée « {name} »"
    ),
    "no_voicemail": _both("no such voicemail message", "ce message vocal n'existe pas"),
    "recording_missing": _both(
        "the recording file is missing", "l'enregistrement de ce message a disparu"
    ),
    "unplayable": _both(
        "this sound cannot be played", "ce son ne peut pas être lu"
    ),
    "send_json": _both(
        "send JSON (Content-Type: application/json)",
        "envoyez du JSON (Content-Type: application/json)",
    ),
    "bad_json": _both("the body is not valid JSON", "le contenu n'est pas du JSON valide"),
    "send_multipart": _both(
        "send multipart/form-data (name, file)", "envoyez un formulaire multipart (name, file)"
    ),
    "extension_exists": _both(
        "extension {extension} already exists", "le poste {extension} existe déjà"
    ),
    "nothing_stored": _both(
        "{extension} has no stored settings over the file",
        "le poste {extension} n'a pas de réglages enregistrés par-dessus le fichier",
    ),
    "music_in_use": _both(
        "{name!r} is still chosen by users", "« {name} » est encore choisie par des utilisateurs"
    ),
    "ics_too_large": _both(
        "an .ics file of at most 2 MB", "un fichier .ics de 2 Mo au plus"
    ),
    "http_error": _both("{reason}", "{reason_fr}"),
    # ---- issues in a request (the `issues` of a 422) ---------------------------------------
    "not_a_setting": _both("{key!r} is not a setting", "« {key} » n'est pas un réglage"),
    "admin_only": _both(
        "only an administrator may change it", "seul un administrateur peut le changer"
    ),
    "body_not_object": _both(
        "send an object of settings to change", "envoyez un objet avec les réglages à changer"
    ),
    "device_admin_fields": _both(
        "only an administrator may set a device's username or static contact",
        "seul un administrateur peut donner à un appareil un identifiant ou une adresse fixe",
    ),
    "invalid_mode": _both("expected append or replace", "attendu : append ou replace"),
    "file_required": _both("an audio file is required", "choisissez un fichier audio"),
    "file_too_large": _both(
        "larger than {max_mb} MB", "plus de {max_mb} Mo : choisissez un fichier plus petit"
    ),
    "empty_file": _both("the file is empty", "le fichier est vide"),
    "not_audio": _both(
        "not a readable audio file (WAV, MP3, OGG, FLAC, M4A...)",
        "ce n'est pas un fichier audio lisible (WAV, MP3, OGG, FLAC, M4A...)",
    ),
    "audio_too_long": _both(
        "too long (more than {seconds} s)", "trop long (plus de {seconds} s)"
    ),
    "audio_timeout": _both(
        "decoding took too long", "la conversion a pris trop de temps"
    ),
    "audio_unavailable": _both(
        "the server cannot convert audio (ffmpeg is missing)",
        "le serveur ne peut pas convertir l'audio (ffmpeg manque)",
    ),
    "name_required": _both("required", "obligatoire"),
    "invalid_name": _both(
        "1 to 64 letters, digits, '-' or '_'", "1 à 64 lettres, chiffres, « - » ou « _ »"
    ),
    "name_shipped": _both("{name!r} is the shipped class", "« {name} » est la musique fournie"),
    "name_in_file": _both(
        "{name!r} is defined in the TOML file",
        "« {name} » est définie dans le fichier de configuration",
    ),
    "not_utf8": _both("not UTF-8 text", "ce n'est pas du texte UTF-8"),
    "not_icalendar": _both(
        "not an iCalendar file (no BEGIN:VCALENDAR)",
        "ce n'est pas un fichier iCalendar (pas de BEGIN:VCALENDAR)",
    ),
    "no_usable_event": _both(
        "no usable event in this file", "aucun événement utilisable dans ce fichier"
    ),
    "destination_not_json": _both(
        "not JSON", "ce n'est pas du JSON"
    ),
    "invalid_datetime": _both(
        "not a date and time (2026-07-01T10:00 or 01/07/2026 10:00)",
        "ce n'est pas une date et une heure (01/07/2026 10:00 ou 2026-07-01T10:00)",
    ),
    "invalid_day": _both(
        "not a date (2026-07-01 or 01/07/2026)",
        "ce n'est pas une date (01/07/2026 ou 2026-07-01)",
    ),
    "caller_too_long": _both("at most {max} characters", "{max} caractères au plus"),
    "invalid_caller": _both(
        "{value!r} is not a phone number (digits, with + and spaces allowed)",
        "« {value} » n'est pas un numéro de téléphone (chiffres, avec + et espaces)",
    ),
    "not_provisionable": _both(
        "a QR code sets up a softphone: this device {why}",
        "un QR code configure un softphone : cet appareil {why_fr}",
    ),
    "not_own_message": _both(
        "“{name}” is the personal message of extension {owner}: choose your own absence message"
        " or a shared announcement",
        "« {name} » est le message personnel du poste {owner} : choisissez votre propre message"
        " d'absence ou une annonce commune",
    ),
    "invalid_rules": _both("the rules could not be compiled", "les règles n'ont pas pu être compilées"),
}


def text(code: str, params: Mapping[str, Any], lang: Lang, *, first: int = 1) -> str:
    """The sentence for an API or configuration code (fields counted from `first`)."""
    entry = MESSAGES.get(code)
    if entry is None:
        if code in CONFIG_MESSAGES:
            return render_config(code, params, lang, first=first)
        return str(params.get("reason", code))
    return fill(entry[lang], ChainMap({"_first": first}, cast("MutableMapping[str, Any]", params)), code)
