"""What the commands share: loading the effective configuration (the TOML file plus the
settings stored from the dashboard, as `b2bua run` sees it), the language of what they print,
and their way of failing."""

from __future__ import annotations

import argparse
import sys
from typing import Literal

from b2bua.config import Config, ConfigError, User
from b2bua.config.messages import render
from b2bua.settings import Effective, load_effective
from b2bua.settings.effective import UnknownTenant

Lang = Literal["fr", "en"]


def load(args: argparse.Namespace, command: str) -> Effective | None:
    """The effective configuration of `--config`; None after printing why there is none. Stored
    settings left out because they no longer validate are reported on stderr (`b2bua check`
    reports them itself, as errors)."""
    try:
        effective = load_effective(args.config, getattr(args, "tenant", None))
    except UnknownTenant as exc:
        print(f"b2bua {command}: {exc}", file=sys.stderr)
        return None
    except ConfigError as exc:
        french = getattr(args, "lang", None) == "fr"
        for issue in exc.issues:
            if french:
                reason = render(issue.code, issue.params, "fr")
                print(f"{issue.file}:{issue.line}: {issue.field}: {reason}", file=sys.stderr)
            else:
                print(issue, file=sys.stderr)
        return None
    except OSError as exc:
        print(f"{args.config}: {exc.strerror or exc}", file=sys.stderr)
        return None
    if command != "check":
        for rejection in effective.rejected:
            who = rejection.extension or "all users"
            print(
                f"b2bua {command}: warning: the settings stored from the dashboard for {who} no "
                f"longer validate and are not in force (b2bua check says why)",
                file=sys.stderr,
            )
    return effective


def fail(command: str, message: str) -> int:
    print(f"b2bua {command}: {message}", file=sys.stderr)
    return 1


def language(args: argparse.Namespace, config: Config, user: User | None = None) -> Lang:
    """`--lang` if given, else the user's `language`, else the server's."""
    chosen = getattr(args, "lang", None)
    if chosen in ("fr", "en"):
        return chosen  # type: ignore[no-any-return]
    if user is not None and user.language in ("fr", "en"):
        return user.language
    return config.server.language


def plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"
