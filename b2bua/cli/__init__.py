"""The `b2bua` command line (`b2bua.cli.main`), one module per group of commands:
`check`, `rules` (trace, week, ics-export, ics-import), `devices` (devices, qr), `calls`,
`settings` (export, import); `common` holds the one way they load the effective
configuration."""

from b2bua.cli.main import DEFAULT_CONFIG, build_parser, main

__all__ = ["DEFAULT_CONFIG", "build_parser", "main"]
