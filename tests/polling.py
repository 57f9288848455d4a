"""Waiting, in a test, for what another thread or process does.

Importable from every test module (``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    predicate: Callable[[], bool], timeout_s: float = 5.0, interval_s: float = 0.005
) -> bool:
    """Ask ``predicate`` every ``interval_s`` until it is true or ``timeout_s``
    has passed; return its last answer (asked once more at the deadline, so a
    slow machine that got there just in time still passes).

    >>> wait_for(lambda: True, timeout_s=0.0)
    True
    """
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
