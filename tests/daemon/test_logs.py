"""Log lines: levelled text in a terminal, ``<N>`` syslog priorities when stderr
is the journal stream systemd announced."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.daemon.logs import (
    LOGGER_NAME,
    setup_logging,
    stream_is_journal,
    syslog_priority,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    logger = logging.getLogger(LOGGER_NAME)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_journal_lines_carry_the_syslog_priority_of_their_level() -> None:
    stream = io.StringIO()
    logger = setup_logging("debug", stream=stream, journal=True)
    output = logger.getChild("output")
    output.debug("polling")
    output.info("playing")
    output.warning("device lost")
    output.error("cannot open")
    logger.critical("giving up")
    assert stream.getvalue().splitlines() == [
        "<7>output: polling",
        "<6>output: playing",
        "<4>output: device lost",
        "<3>output: cannot open",
        "<2>soundscape: giving up",
    ]


def test_each_line_of_a_multi_line_message_keeps_its_priority() -> None:
    stream = io.StringIO()
    setup_logging("info", stream=stream, journal=True).warning("one\ntwo")
    assert stream.getvalue().splitlines() == ["<4>soundscape: one", "<4>two"]


def test_terminal_lines_have_time_level_and_name_and_respect_the_level() -> None:
    stream = io.StringIO()
    logger = setup_logging("warning", stream=stream, journal=False)
    logger.getChild("osc").info("not shown")
    logger.getChild("osc").warning("port in use")
    (line,) = stream.getvalue().splitlines()
    date, clock, level, rest = line.split(" ", 3)
    assert len(date) == 10 and len(clock) == 8
    assert (level, rest) == ("warning", "osc: port in use")


def test_setting_up_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", stream=first, journal=True)
    logger = setup_logging("debug", stream=second, journal=True)
    logger.debug("reloaded")
    assert first.getvalue() == ""
    assert second.getvalue() == "<7>soundscape: reloaded\n"


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of debug, info"):
        setup_logging("loud")


def test_custom_levels_round_down_to_a_standard_priority() -> None:
    assert syslog_priority(logging.WARNING + 5) == 4
    assert syslog_priority(1) == 7


def test_journal_stream_is_believed_only_for_the_stream_it_names(
    tmp_path: Path,
) -> None:
    with open(tmp_path / "err", "w") as stream:
        info = os.fstat(stream.fileno())
        same = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        other = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"}
        assert stream_is_journal(stream, same)
        assert not stream_is_journal(stream, other)
        assert not stream_is_journal(stream, {})
        assert not stream_is_journal(io.StringIO(), same)


def test_a_process_whose_stderr_is_the_journal_stream_prefixes_priorities(
    tmp_path: Path,
) -> None:
    # The child's stderr is a file; JOURNAL_STREAM names that file's inode,
    # as systemd names the journal socket it connects stderr to.
    err_path = tmp_path / "stderr"
    code = (
        "from engine.daemon.logs import setup_logging\n"
        "setup_logging('info').getChild('daemon').warning('started')\n"
    )
    with open(err_path, "w") as err:
        info = os.fstat(err.fileno())
        subprocess.run(
            [sys.executable, "-c", code],
            stderr=err,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
            },
            timeout=30,
            check=True,
        )
    assert err_path.read_text() == "<4>daemon: started\n"
