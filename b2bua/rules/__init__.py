"""Routing rules: compile a configuration into an immutable table, decide where calls go.

`compile_rules(config) -> RuleTable`; `RuleTable.decide(callee, caller, when) -> Decision`.
Pure logic: no asyncio, no sockets, no clock reads (the instant is an argument).
"""

from b2bua.rules.compiler import RuleBook, RuleTable, TableStats, compile_rules, local_instant
from b2bua.rules.model import RULES, Decision, Destination, Rule, UnknownExtension
from b2bua.rules.numbers import normalize_number
from b2bua.rules.warnings import check_warnings

__all__ = [
    "RULES",
    "Decision",
    "Destination",
    "Rule",
    "RuleBook",
    "RuleTable",
    "TableStats",
    "UnknownExtension",
    "check_warnings",
    "compile_rules",
    "local_instant",
    "normalize_number",
]
