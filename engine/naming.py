"""Helpers for messages that name things: suggestions for near misses.

Control thread only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'rain'?)`` for the closest of ``choices``, or ``""``.

    >>> did_you_mean("rian", ["rain", "wind"])
    " (did you mean 'rain'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
