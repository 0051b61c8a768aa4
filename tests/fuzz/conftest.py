"""Hypothesis profiles for the fuzzers, and a count of the examples they ran.

``suite`` (default): the budgets in the files, as `make test` runs them. ``deep``
(``HYPOTHESIS_PROFILE=deep``, `make fuzz`): every budget times `budget.DEEP_FACTOR`. The
terminal summary reports how many examples ran, for docs/reliability.md.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import settings

from tests.fuzz.budget import DEEP_FACTOR, PROFILE

settings.register_profile("suite", deadline=None, print_blob=True)
settings.register_profile("deep", max_examples=200 * DEEP_FACTOR, deadline=None, print_blob=True)
settings.load_profile(PROFILE)

_PASSING = re.compile(r"(\d+) passing")
_examples: list[int] = []


def pytest_runtest_teardown(item: pytest.Item) -> None:
    stats = getattr(item, "hypothesis_statistics", "")
    if stats:
        _examples.append(sum(int(n) for n in _PASSING.findall(stats)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _examples:
        terminalreporter.write_line(
            f"hypothesis ({PROFILE}): {sum(_examples)} examples in {len(_examples)} properties"
        )
