"""Sharing out a cold compile: every kernel compiled exactly once, by
whichever process claims it first; the kernels a program wants first, and
the program plays before the cache is full."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import pytest
from polling import wait_for

from engine.dsp.cold_compile import (
    FETCHING_FILE,
    PROCESSES_ENV,
    WANTED_FILE,
    BackgroundCompile,
    all_done,
    claim_order,
    claim_state,
    compile_claimed,
    costliest_first,
    process_count,
    read_wanted,
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


def test_claim_order_puts_wanted_then_likely_then_the_costliest(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    a, b, c, d = _kernels(log, {"a": 30, "b": 20, "c": 10, "d": 5}, tmp_path)
    assert claim_order([a, b, c, d]) == [a, b, c, d]
    assert claim_order([a, b, c, d], likely=[d, c]) == [d, c, a, b]
    assert claim_order([a, b, c, d], ["fake.c", "fake.b"], [d]) == [b, c, d, a]
    # A likely kernel that is not among those to compile is left out.
    (tmp_path / "more").mkdir()
    (other,) = _kernels(log, {"other": 50}, tmp_path / "more")
    assert claim_order([a, b], likely=[other]) == [a, b]


def test_a_wanted_kernel_is_claimed_next_and_the_rest_goes_background(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    a, b, c, d = _kernels(log, {"a": 30, "b": 20, "c": 10, "d": 5}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    compile_c, compile_d = c.compile, d.compile

    def c_then_a_program_wants_d(args: tuple) -> None:
        compile_c(args)
        # The rendering process publishes its program's kernels meanwhile
        # and waits for them.
        (claims / FETCHING_FILE).touch()
        (claims / WANTED_FILE).write_text("fake.d\n")

    def d_then_the_program_plays(args: tuple) -> None:
        compile_d(args)
        (claims / FETCHING_FILE).unlink()

    c.compile = c_then_a_program_wants_d  # type: ignore[method-assign]
    d.compile = d_then_the_program_plays  # type: ignore[method-assign]
    compile_claimed(
        [a, b, c, d],
        claims,
        "1",
        likely=[c, b],
        on_background=lambda: log.append("BG"),
    )
    # b was a guess, but the program is playing by then: nobody waits for it.
    assert log == ["c", "d", "BG", "b", "a"]
    assert read_wanted(claims) == ["fake.d"]


def test_guesses_compile_in_the_foreground_until_a_program_exists(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    a, b, c = _kernels(log, {"a": 30, "b": 20, "c": 10}, tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    compile_claimed(
        [a, b, c], claims, "1", likely=[c, b], on_background=lambda: log.append("BG")
    )
    assert log == ["c", "b", "BG", "a"]


# A stand-in worker: takes the claim ``fake.big`` as worker 1 and holds it
# until the test writes ``release``; then dies without finishing it, or
# finishes it and the entry points (argument: "die" or "finish").
_HOLDING_WORKER = """
import os, sys, time
from pathlib import Path
claims = Path(os.environ["SOUNDSCAPE_COMPILE_CLAIMS"])
me = os.environ["SOUNDSCAPE_COMPILE_WORKER"]
fd = os.open(claims / "fake.big", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
os.write(fd, (me + "\\n").encode())
while not (claims / "release").exists():
    time.sleep(0.01)
if "{mode}" == "die":
    os._exit(3)
os.write(fd, b"done\\n")
(claims / "entry-points").write_text(me + "\\ndone\\n")
"""


def _fetch_in_thread(run: BackgroundCompile, kernels: list) -> threading.Thread:
    thread = threading.Thread(target=run.fetch, args=(kernels,), daemon=True)
    thread.start()
    return thread


def _big_held_by_a_worker(tmp_path: Path, mode: str):  # type: ignore[no-untyped-def]
    """Kernels ``big`` and ``small``, and a background compile whose one
    worker has claimed ``big`` and holds it until ``claims/release`` appears,
    then finishes it or dies (``mode``). Returns what was compiled here (the
    log), both kernels, the completion calls, the run and its claims dir."""
    log: list[str] = []
    big, small = _kernels(log, {"big": 30, "small": 3}, tmp_path)
    completed: list[bool] = []
    run = BackgroundCompile(
        {1: big, 2: small},
        1,
        worker_code=_HOLDING_WORKER.format(mode=mode),
        on_complete=lambda: completed.append(True),
    )
    claims = run.claims_dir
    assert wait_for((claims / "fake.big").exists, timeout_s=30.0)
    return log, big, small, completed, run, claims


def test_fetch_waits_for_a_kernel_a_live_worker_holds(tmp_path: Path) -> None:
    log, big, small, completed, run, claims = _big_held_by_a_worker(tmp_path, "finish")
    fetching = _fetch_in_thread(run, [big, small])
    # The free kernel is compiled here; the held one is waited for.
    fetching.join(0.5)
    assert fetching.is_alive()
    assert log == ["small"]
    assert read_wanted(claims) == ["fake.big", "fake.small"]
    (claims / "release").touch()
    fetching.join(30)
    assert not fetching.is_alive()
    assert log == ["small"]  # big came from the worker, not compiled here
    report = run.wait(30)
    assert report is not None and report.complete
    assert completed == [True]
    assert [p["kernels"] for p in report.processes] == [1, 2]  # big + entry points
    assert not claims.exists()


def test_fetch_takes_over_a_kernel_whose_worker_died(tmp_path: Path) -> None:
    log, big, _, completed, run, claims = _big_held_by_a_worker(tmp_path, "die")
    fetching = _fetch_in_thread(run, [big])
    fetching.join(0.3)
    assert fetching.is_alive() and log == []  # its worker still lives
    (claims / "release").touch()
    fetching.join(30)
    assert not fetching.is_alive()
    assert log == ["big"]
    assert claim_state(claims, "fake.big") == ("0", True)
    report = run.wait(30)
    assert report is not None
    # Nobody compiled small or the entry points: the cache is not complete.
    assert not report.complete and completed == []


# A cold start in a scratch cache: the first program renders before the cache
# is full; then a program with a kernel nobody had compiled yet loads (it
# waits for that kernel off the audio thread) and renders; then the process
# exits. The second run renders the same two programs from the full cache.
_COLD_THEN_LATE = """
import json, sys
import numpy as np
from engine.demos import DEMOS
from engine.dsp import cold_compile
from engine.dsp.cold_compile import claim_name
from engine.dsp.interpreter import KERNELS
from engine.dsp.nodes import node_types
from engine.graph import Graph
from engine.rt.engine import Engine

out = sys.argv[1]
cold = cold_compile.running() is not None
engine = Engine(seed=7)
engine.load(DEMOS["sleep"]())
first = engine.render(4096)
left = cold_compile.running().progress()[1] if cold else []
if cold:
    # The generator whose kernel comes last: still in nobody's hands.
    late = [
        kind for kind in ("dust", "pulse", "heartbeat", "melody", "chords")
        if claim_name(KERNELS[node_types()[kind].opcode]) in left
    ]
    kind = late[-1] if late else "none"
else:
    kind = sys.argv[2]
graph = Graph()
graph.output(graph.node(kind, name="late"))
engine = Engine(seed=7)
engine.load(graph)
second = engine.render(8192)
np.save(out + "-first.npy", first)
np.save(out + "-second.npy", second)
workers = [w.pid for w in cold_compile.running()._workers] if cold else []
print(json.dumps({"cold": cold, "left": left, "kind": kind, "workers": workers}))
# A normal exit: it waits for the workers to fill the cache.
"""


def test_a_cold_start_plays_before_the_cache_is_full_and_bit_identical(
    tmp_path: Path, run_python
) -> None:
    import json

    import numpy as np

    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), PROCESSES_ENV: "2"}
    cold = json.loads(
        run_python(_COLD_THEN_LATE, str(tmp_path / "cold"), env=env).splitlines()[-1]
    )
    assert cold["cold"]
    # The first block came while kernels and the entry points were left.
    assert "entry-points" in cold["left"] and len(cold["left"]) > 5
    assert cold["kind"] != "none", cold["left"]
    # Its exit waited for the workers: none is left running.
    assert len(cold["workers"]) == 1
    for pid in cold["workers"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    warm = json.loads(
        run_python(
            _COLD_THEN_LATE, str(tmp_path / "warm"), cold["kind"], env=env
        ).splitlines()[-1]
    )
    assert not warm["cold"]  # the cache was marked full: no workers now
    for part in ("first", "second"):
        a = np.load(tmp_path / f"cold-{part}.npy")
        b = np.load(tmp_path / f"warm-{part}.npy")
        assert np.abs(a).max() > 0.0, part
        assert a.tobytes() == b.tobytes(), part


def test_the_guess_is_the_master_bus_and_the_demos_costliest_first() -> None:
    from engine.demos import DEMOS
    from engine.dsp.cold_compile import likely_first
    from engine.dsp.interpreter import KERNELS
    from engine.rt.engine import master_graph

    guess = likely_first(KERNELS)
    assert guess == costliest_first(guess)
    played = {
        KERNELS[node.spec.opcode]
        for graph in (master_graph(), *(build() for build in DEMOS.values()))
        for node in graph.nodes
        if node.spec.opcode in KERNELS
    }
    assert set(guess) == played
    assert len(played) < len(set(KERNELS.values()))  # a guess, not everything
