"""The settings store: what users and admins change from the dashboard, kept in SQLite, and the
one loader of the effective configuration (TOML plus stored settings).

The modules, by concept:

- `overrides`: stored user settings and uploaded music merged over the TOML, validated with
  the same models and cross-checks as `b2bua check` (`SettingsStore`);
- `effective`: `load_effective(path)`, what every command reads;
- `toml_writer`: the configuration as a TOML-shaped dict and back to TOML text;
- `accounts`: dashboard passwords and sessions;
- `voicemail`: the voicemail index;
- `transfer`: `b2bua import`'s rows;
- `tables`: the SQLite tables and their migrations.
"""

from b2bua.settings.accounts import (
    ADMIN_LOGIN,
    ADMIN_PASSWORD_ENV,
    PBKDF2_ITERATIONS,
    Account,
    admin_missing,
    admin_password,
    create_admin,
    ensure_admin,
    forget_password,
    hash_password,
    session_hash,
    set_password,
    stored_password,
    verify_password,
)
from b2bua.settings.effective import Effective, load_effective
from b2bua.settings.overrides import (
    UPLOADS_DIR,
    MusicUpload,
    Rejection,
    SettingsRejected,
    SettingsStore,
    UserOverride,
    attach_settings,
    merge_raw,
    open_store,
    user_scope,
)
from b2bua.settings.tables import COMPONENT, MIGRATIONS, REVISION_KEY, ensure_schema
from b2bua.settings.toml_writer import config_to_raw, raw_to_toml, user_to_raw
from b2bua.settings.transfer import import_rows
from b2bua.settings.voicemail import (
    VOICEMAIL_DIR,
    Voicemail,
    add_voicemail,
    get_voicemail,
    greeting_file,
    list_voicemail,
    voicemail_dir,
    voicemail_file,
)

__all__ = [
    "ADMIN_LOGIN",
    "ADMIN_PASSWORD_ENV",
    "COMPONENT",
    "MIGRATIONS",
    "PBKDF2_ITERATIONS",
    "REVISION_KEY",
    "UPLOADS_DIR",
    "VOICEMAIL_DIR",
    "Account",
    "Effective",
    "MusicUpload",
    "Rejection",
    "SettingsRejected",
    "SettingsStore",
    "UserOverride",
    "Voicemail",
    "add_voicemail",
    "admin_missing",
    "admin_password",
    "attach_settings",
    "config_to_raw",
    "create_admin",
    "ensure_admin",
    "ensure_schema",
    "forget_password",
    "get_voicemail",
    "greeting_file",
    "hash_password",
    "import_rows",
    "list_voicemail",
    "load_effective",
    "merge_raw",
    "open_store",
    "raw_to_toml",
    "session_hash",
    "set_password",
    "stored_password",
    "user_scope",
    "user_to_raw",
    "verify_password",
    "voicemail_dir",
    "voicemail_file",
]
