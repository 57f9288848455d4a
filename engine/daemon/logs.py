"""The daemon's log: levelled lines on stderr, journal priorities under systemd.

In a terminal a line reads ``2026-11-23 14:02:11 warning output: device lost``.
Under systemd, stderr goes to the journal, which stamps the time itself and
reads a leading ``<N>`` (a syslog priority, ``sd-daemon(3)``) as the line's
level; so there each line reads ``<4>output: device lost`` and
``journalctl -p warning`` keeps it. systemd announces that stderr is the
journal with ``$JOURNAL_STREAM=DEV:INODE``; it is believed only when stderr
really is that stream (a child's redirected stderr inherits the variable).

    logger = setup_logging("info")
    logger.getChild("output").warning("device lost")

Any thread may log (the ``logging`` module locks the handler).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

LOGGER_NAME = "soundscape"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# logging level -> syslog priority (sd-daemon(3): <7> debug ... <2> critical).
SYSLOG_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a ``logging`` level (custom levels round down
    to the next standard one below).

    >>> syslog_priority(logging.WARNING)
    4
    """
    for level in sorted(SYSLOG_PRIORITIES, reverse=True):
        if levelno >= level:
            return SYSLOG_PRIORITIES[level]
    return SYSLOG_PRIORITIES[logging.DEBUG]


def stream_is_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream ``$JOURNAL_STREAM`` names."""
    env = os.environ if env is None else env
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return info.st_dev == int(device) and info.st_ino == int(inode)


class JournalFormatter(logging.Formatter):
    """``<N>name: message``, the prefix repeated on each line of a multi-line
    message (the journal splits them into entries; each keeps its level)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class TerminalFormatter(logging.Formatter):
    """``time level name: message``, levels in lower case like the config's."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelname_lower = record.levelname.lower()
        return super().format(record)


def _short_name(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(LOGGER_NAME) + 1 :] if name.startswith(LOGGER_NAME + ".") else name


class _ShortNames(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.short_name = _short_name(record)
        return True


def setup_logging(
    level: str = "info",
    stream: TextIO | None = None,
    journal: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> logging.Logger:
    """Send the ``soundscape`` logger to ``stream`` (stderr) at ``level``.

    ``journal=None`` detects the journal from ``$JOURNAL_STREAM``. Calling it
    again (SIGHUP with a new log level) replaces the handler, never adds one.

    Raises ``ValueError`` for an unknown level name.
    """
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    stream = sys.stderr if stream is None else stream
    if journal is None:
        journal = stream_is_journal(stream, env)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_soundscape", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._soundscape = True  # type: ignore[attr-defined]
    handler.addFilter(_ShortNames())
    if journal:
        handler.setFormatter(JournalFormatter("%(short_name)s: %(message)s"))
    else:
        handler.setFormatter(
            TerminalFormatter(
                "%(asctime)s %(levelname_lower)s %(short_name)s: %(message)s",
                datefmt="%Y-%m-%d %H:%M:%S",
            )
        )
    logger.addHandler(handler)
    logger.setLevel(LEVELS[level])
    # The daemon's lines go to its own handler only, not twice via the root.
    logger.propagate = False
    return logger
