"""The `b2bua` command line: run, check, trace, week, devices, qr, calls, export, import...

This module declares the arguments and dispatches, importing lazily so that `b2bua check` does
not pay for the SIP stack. Every command but `run` lives in this package and reads the effective
configuration through `b2bua.cli.common.load` (the file plus the stored settings); `run` lives
with the server it starts, which installs the same effective configuration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

DEFAULT_CONFIG = "conf/default.toml"

# subcommand -> "module:function"; the function takes the parsed arguments and returns an exit code.
_HANDLERS: dict[str, str] = {
    "run": "b2bua.server:cmd_run",
    "check": "b2bua.cli.check:cmd_check",
    "trace": "b2bua.cli.rules:cmd_trace",
    "week": "b2bua.cli.rules:cmd_week",
    "ics-export": "b2bua.cli.rules:cmd_ics_export",
    "ics-import": "b2bua.cli.rules:cmd_ics_import",
    "devices": "b2bua.cli.devices:cmd_devices",
    "qr": "b2bua.cli.devices:cmd_qr",
    "calls": "b2bua.cli.calls:cmd_calls",
    "trunks": "b2bua.trunks.commands:cmd_trunks",
    "export": "b2bua.cli.settings:cmd_export",
    "import": "b2bua.cli.settings:cmd_import",
}


# The commands that act on one company's data take --tenant DOMAIN (docs/tenants.md).
_TENANT_COMMANDS = frozenset({"check", "trace", "week", "devices", "calls", "export", "qr",
                              "ics-export", "ics-import"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2bua",
        description="Business-telephony SIP back-to-back user agent.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="TOML configuration file")
        if name in _TENANT_COMMANDS:
            p.add_argument(
                "--tenant", metavar="DOMAIN",
                help="the company to act on, by its domain (docs/tenants.md; default: the "
                     "top-level one, [server] domain)")
        return p

    p = add("run", "Start SIP, media and the dashboard in the foreground (logs to stderr).")
    p.add_argument(
        "--listen",
        action="append",
        metavar="TRANSPORT:HOST:PORT",
        help="SIP listening address, e.g. udp:127.0.0.1:5070 (repeatable; replaces the file's)",
    )
    p.add_argument("--http", metavar="HOST:PORT", help="dashboard and REST API address")
    p.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument(
        "--workers", type=int, choices=range(1, 17), metavar="N",
        help="worker processes sharing the SIP addresses (replaces the file's server.workers)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)  # INDEX:COUNT:GROUP, set by worker 0

    p = add("check", "Validate and compile the configuration (the file plus the settings stored "
            "from the dashboard); print a summary and every warning.")
    p.add_argument("--lang", choices=["fr", "en"], default="en",
                   help="language of the reasons (default: en)")

    p = add("trace", "Print the routing decision for a call and why.")
    p.add_argument("--to", required=True, metavar="EXT", help="called extension")
    p.add_argument("--from", dest="caller", required=True, metavar="NUMBER", help="caller number")
    p.add_argument(
        "--at",
        metavar="ISO8601",
        help="instant of the call (2026-07-01T10:00 or 01/07/2026 10:00); without an offset, "
        "the callee's local time (default: now)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--lang", choices=["fr", "en"],
        help="language of the explanation (default: the called user's language)",
    )

    p = add("week", "Print a week timeline of where a caller's calls to EXT would go.")
    p.add_argument("ext", metavar="EXT")
    p.add_argument("--from", dest="caller", default="*", metavar="NUMBER")
    p.add_argument("--start", metavar="DATE",
                   help="first day (YYYY-MM-DD or DD/MM/YYYY, default: this Monday)")
    p.add_argument("--out", metavar="FILE", help="also save the timeline as .svg or .png")
    p.add_argument("--lang", choices=["fr", "en"], default="en",
                   help="language of the labels and destinations (default: en)")

    p = add("ics-export", "Write a user's exceptional periods to an iCalendar (.ics) file.")
    p.add_argument("ext", metavar="EXT")
    p.add_argument("--out", required=True, metavar="FILE.ics")
    p.add_argument("--year", type=int, metavar="YYYY", help="first year of yearly periods")

    p = add("ics-import", "Print the exceptional periods of an .ics file as TOML for EXT.")
    p.add_argument("ext", metavar="EXT")
    p.add_argument("file", metavar="FILE.ics")
    p.add_argument(
        "--destination",
        metavar="TOML",
        help='e.g. \'{ kind = "announcement", message = "closed" }\' (default: closed destination)',
    )

    p = add("devices", "List each extension's devices and their registration state.")
    p.add_argument("--json", action="store_true")

    p = add("qr", "Render a softphone provisioning QR code for a device of EXT.")
    p.add_argument("ext", metavar="EXT")
    p.add_argument("--device", type=int, default=1, metavar="N", help="device number (1-based)")
    p.add_argument("--out", required=True, metavar="FILE.png")

    p = add("calls", "List the last call records.")
    p.add_argument("--last", type=int, default=20, metavar="N")
    p.add_argument("--json", action="store_true")
    p.add_argument("--lang", choices=["fr", "en"],
                   help="language of the explanations (default: each callee's language)")

    p = add("trunks", "List each trunk's registration, state and lines in use.")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = add("export", "Print the whole effective configuration (the file plus the settings "
            "stored from the dashboard) as TOML.")
    p.add_argument("--out", metavar="FILE.toml",
                   help="write to FILE instead of stdout, and the sounds (music, announcements, "
                        "greetings) to the folder FILE.audio/ beside it")

    p = add("import", "Store the users, music, announcements and greetings of FILE as this "
            "installation's settings (a running server applies them within seconds).")
    p.add_argument("file", metavar="FILE.toml")
    p.add_argument("--dry-run", action="store_true", help="validate only")
    return parser


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = _HANDLERS[name].split(":")
    module = importlib.import_module(module_name)
    func: Callable[[argparse.Namespace], int] = getattr(module, func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run" and argv is None:  # the command line, not a caller in-process
        from b2bua.allocator import restart_if_needed

        restart_if_needed(args.config, sys.argv[1:])  # returns once on the configured allocator
    return _handler(args.command)(args)


if __name__ == "__main__":
    sys.exit(main())
