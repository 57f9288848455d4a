"""Sharing out a cold compile: every kernel compiled exactly once, costliest
first, by whichever process claims it first."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

from engine.dsp.cold_compile import (
    PROCESSES_ENV,
    all_done,
    compile_claimed,
    costliest_first,
    process_count,
)
from engine.dsp.dispatch import KERNEL_ARGS


class FakeKernel:
    """Stands in for a Numba dispatcher: records its compiles. Its Python
    function is real (the cost estimate reads its source)."""

    def __init__(self, py_func: object, log: list[str]) -> None:
        self.py_func = py_func
        self.__name__ = py_func.__name__  # type: ignore[attr-defined]
        self.__module__ = "fake"
        self.log = log
        self.compiled_for: list[tuple] = []

    def compile(self, args: tuple) -> None:
        self.compiled_for.append(args)
        self.log.append(self.__name__)


def _kernels(log: list[str], sizes: dict[str, int], folder: Path) -> list[FakeKernel]:
    """Fake kernels whose sources are ``sizes[name]`` lines long."""
    path = folder / "fake_kernels.py"
    path.write_text(
        "".join(
            f"def {name}():\n" + "    x = 1\n" * lines for name, lines in sizes.items()
        )
    )
    spec = importlib.util.spec_from_file_location(f"fake_{folder.name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return [FakeKernel(getattr(module, name), log) for name in sizes]


def test_costliest_first_sorts_by_cost_and_lists_each_kernel_once(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    small, big, mid = _kernels(log, {"small": 1, "big": 40, "mid": 10}, tmp_path)
    order = costliest_first([small, big, mid, big, small])
    assert [k.__name__ for k in order] == ["big", "mid", "small"]


def test_one_process_alone_compiles_everything_costliest_first(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    kernels = _kernels(log, {"a": 3, "b": 30, "c": 12}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    done = compile_claimed(kernels, claims)
    assert log == ["b", "c", "a"]
    assert {k.__name__ for k in done} == {"a", "b", "c"}
    assert all(k.compiled_for == [KERNEL_ARGS] for k in kernels)
    # The claims stay for the others to see: a second pass compiles nothing.
    assert compile_claimed(kernels, claims) == []
    assert log == ["b", "c", "a"]


def test_concurrent_claimers_compile_each_kernel_exactly_once(tmp_path: Path) -> None:
    log: list[str] = []
    kernels = _kernels(log, {f"k{i}": 1 + (i * 7) % 23 for i in range(40)}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    results: list[list[object]] = []
    start = threading.Barrier(4)

    def claimer() -> None:
        start.wait()
        results.append(compile_claimed(kernels, claims))

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    compiled = [k for share in results for k in share]
    assert len(compiled) == len(kernels)
    assert {id(k) for k in compiled} == {id(k) for k in kernels}
    assert all(len(k.compiled_for) == 1 for k in kernels)


def test_kernels_claimed_elsewhere_are_skipped(tmp_path: Path) -> None:
    log: list[str] = []
    kernels = _kernels(log, {"taken": 20, "free": 2}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "fake.taken").touch()
    assert [k.__name__ for k in compile_claimed(kernels, claims)] == ["free"]
    assert log == ["free"]


def test_process_count_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROCESSES_ENV, "3")
    assert process_count() == 3
    monkeypatch.setenv(PROCESSES_ENV, "0")
    assert process_count() == 1
    monkeypatch.setenv(PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match="SOUNDSCAPE_COMPILE_PROCESSES='two'"):
        process_count()
    monkeypatch.delenv(PROCESSES_ENV)
    assert 1 <= process_count() <= 4


def test_all_done_needs_every_kernel_compiled_by_someone(tmp_path: Path) -> None:
    log: list[str] = []
    kernels = _kernels(log, {"x": 5, "y": 9}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    assert not all_done(kernels, claims)
    # Another process took y and died before it was compiled.
    (claims / "fake.y").write_text("1\n")
    compile_claimed(kernels, claims, owner="0")
    assert log == ["x"]
    assert not all_done(kernels, claims)
    (claims / "fake.y").write_text("1\ndone\n")
    assert all_done(kernels, claims)
    assert (claims / "fake.x").read_text().split() == ["0", "done"]


def test_a_failed_compile_leaves_its_claim_not_done(tmp_path: Path) -> None:
    log: list[str] = []
    (kernel,) = _kernels(log, {"broken": 3}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()

    def fail(args: tuple) -> None:
        raise TypeError("cannot compile")

    kernel.compile = fail  # type: ignore[method-assign]
    with pytest.raises(TypeError):
        compile_claimed([kernel], claims, owner="2")
    assert (claims / "fake.broken").read_text().split() == ["2"]
    assert not all_done([kernel], claims)
