"""Example budgets for the fuzzers: modest in `make test`, deep in `make fuzz`.

Every property states its in-suite budget as ``FUZZ = budget(400)``. The hypothesis profile
(registered in ``tests/fuzz/conftest.py``, chosen by ``HYPOTHESIS_PROFILE``) multiplies it:
``suite`` (the default) by 1, ``deep`` (`make fuzz`) by `DEEP_FACTOR`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEEP_FACTOR = 10
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "suite")


def budget(examples: int, *, slow: bool = False) -> settings:
    factor = DEEP_FACTOR if PROFILE == "deep" else 1
    return settings(
        max_examples=examples * factor,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow] if slow else [],
    )
