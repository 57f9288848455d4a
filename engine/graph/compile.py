"""Compile a :class:`Graph` into a :class:`Program` of flat arrays.

Steps: keep only nodes that reach the output (dead-node elimination), order them
so every node runs after its inputs (cycles are refused: feedback lives inside
nodes such as ``delay``), resolve voice counts, colour buffers so a slot is reused
once its last reader has run, lay out parameters and state, and run every node's
initialiser. All memory is allocated here, on the control thread.

Audio thread: no.
"""

from __future__ import annotations

import itertools
import math
import zlib
from typing import Any

import numpy as np

from engine.dsp.dispatch import request_kernels
from engine.dsp.layout import (
    I_IN,
    I_N_PARAM,
    I_N_STATE,
    I_OP,
    I_OUT,
    I_OUT_WIDTH,
    I_PARAM,
    I_STATE,
    I_VOICES,
    INFO_GENERATION,
    INFO_IN_SLOT,
    INFO_N_INSTR,
    INFO_N_PARAMS,
    INFO_OUT_SLOT,
    INFO_OUT_STRIDE,
    INFO_WIDTH,
    INSTR_WIDTH,
    MAX_INPUTS,
    N_PARAM_FIELDS,
    P_CURRENT,
    P_GOOD,
    P_MAX,
    P_MIN,
    P_SLEW,
    P_SLEW_BASE,
    P_START,
    P_TARGET,
    P_TAU,
    ZERO_SLOT,
)
from engine.dsp.opcodes import Op
from engine.graph.graph import Graph, GraphError, Node, Signal
from engine.graph.program import ParamRef, Program

DEFAULT_MAX_BLOCK_SIZE = 2048
# Extra samples per buffer row: with rows exactly 2048 doubles (16 KiB) apart,
# every row maps to the same L1 cache sets and a node reading four inputs evicts
# its own lines. 8 doubles (one cache line) staggers them.
_ROW_PAD = 8
# ln(1000): a one-pole smoother reaches -60 dB after this many time constants.
_LN_1000 = math.log(1000.0)
_generations = itertools.count(1)


def node_seed(program_seed: int, node_name: str) -> int:
    """A stable 32-bit seed per node, so each noise node has its own stream and
    adding a node elsewhere does not change it."""
    return zlib.crc32(node_name.encode(), program_seed & 0xFFFFFFFF)


def _ordered(graph: Graph) -> list[Node]:
    """Nodes that reach the output, each after its inputs."""
    if graph.output_signal is None:
        raise GraphError("graph has no output: call graph.output(node)")
    order: list[Node] = []
    done: set[int] = set()
    visiting: set[int] = set()

    def visit(node: Node, path: list[str]) -> None:
        if node.index in done:
            return
        if node.index in visiting:
            cycle = " -> ".join([*path[path.index(node.name) :], node.name])
            raise GraphError(
                f"cycle in graph: {cycle}. Feedback must go through a delay "
                "node's feedback parameter."
            )
        visiting.add(node.index)
        for signal in sorted(node.inputs.values(), key=lambda s: s.node.index):
            visit(signal.node, [*path, node.name])
        visiting.discard(node.index)
        done.add(node.index)
        order.append(node)

    visit(graph.output_signal.node, [])
    return order


def _param_count(node: Node) -> int:
    longest = 1
    for value in node.values.values():
        if isinstance(value, (list, tuple, np.ndarray)):
            longest = max(longest, len(value))
    return longest


def _signal_width(signal: Signal, widths: dict[int, int], where: str) -> int:
    full = widths[signal.node.index]
    width = full - signal.offset if signal.width is None else signal.width
    if signal.offset < 0 or width < 1 or signal.offset + width > full:
        raise GraphError(
            f"{where}: channels {signal.offset}..{signal.offset + width - 1} of "
            f"{signal.node.name} do not exist (it has {full})"
        )
    return width


def _resolve_voices(node: Node, widths: dict[int, int]) -> int:
    spec = node.spec
    if spec.fixed_voices is not None:
        if node.voices not in (None, spec.fixed_voices):
            raise GraphError(
                f"{node.name}: {spec.name} always has {spec.fixed_voices} voices"
            )
        return spec.fixed_voices
    if node.voices is not None:
        return node.voices
    voices = _param_count(node)
    if spec.voices_from_input:
        for input_name, signal in node.inputs.items():
            where = f"{node.name}.{input_name}"
            voices = max(voices, _signal_width(signal, widths, where))
    return voices


class _SlotAllocator:
    """First-fit allocation of contiguous buffer slots; slot 0 stays zero."""

    def __init__(self) -> None:
        self.in_use = [True]  # the zero slot

    def take(self, width: int) -> int:
        run = 0
        for slot in range(1, len(self.in_use)):
            run = run + 1 if not self.in_use[slot] else 0
            if run == width:
                start = slot - width + 1
                self.in_use[start : slot + 1] = [True] * width
                return start
        # Grow, reusing a free run at the end.
        start = len(self.in_use) - run
        self.in_use[start:] = [True] * run
        self.in_use.extend([True] * (width - run))
        return start

    def give_back(self, start: int, width: int) -> None:
        for slot in range(start, start + width):
            self.in_use[slot] = False

    @property
    def n_slots(self) -> int:
        return len(self.in_use)


def compile_graph(
    graph: Graph,
    sample_rate: int = 48000,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    seed: int = 0,
) -> Program:
    """Compile ``graph`` into a ready-to-run :class:`Program`.

    Nothing here compiles Numba code: the interpreter is compiled once and cached,
    so loading another graph is instant.
    """
    order = _ordered(graph)
    position = {node.index: i for i, node in enumerate(order)}

    # Voices and output widths, in dependency order.
    voices: dict[int, int] = {}
    widths: dict[int, int] = {}
    for node in order:
        voices[node.index] = _resolve_voices(node, widths)
        widths[node.index] = node.spec.output_width(voices[node.index])

    # Each node's output stays alive until its last reader has run.
    last_read: dict[int, int] = {}
    for node in order:
        for signal in node.inputs.values():
            last_read[signal.node.index] = position[node.index]
    out_signal = graph.output_signal
    assert out_signal is not None
    last_read[out_signal.node.index] = len(order)

    alloc = _SlotAllocator()
    out_slot: dict[int, int] = {}
    instr = np.zeros((len(order), INSTR_WIDTH), dtype=np.int64)
    # value, tau, min, max, slew
    param_rows: list[tuple[float, float, float, float, float]] = []
    param_refs: dict[tuple[str, str], ParamRef] = {}
    state_sizes: list[int] = []
    options_of: list[dict[str, Any]] = []
    input_slot = -1

    for i, node in enumerate(order):
        spec = node.spec
        v = voices[node.index]
        row = instr[i]
        row[I_OP] = int(spec.opcode)
        row[I_VOICES] = v

        for k, input_name in enumerate(spec.inputs[:MAX_INPUTS]):
            signal = node.inputs.get(input_name)
            if signal is None:
                row[I_IN + 2 * k] = ZERO_SLOT
                row[I_IN + 2 * k + 1] = 0
                continue
            where = f"{node.name}.{input_name}"
            width = _signal_width(signal, widths, where)
            if width not in (1, v):
                raise GraphError(
                    f"{where}: input has {width} channels but the node has {v} "
                    f"voices; connect 1 or {v} channels"
                )
            row[I_IN + 2 * k] = out_slot[signal.node.index] + signal.offset
            row[I_IN + 2 * k + 1] = 0 if (width == 1 and v > 1) else 1

        width = widths[node.index]
        row[I_OUT] = alloc.take(width)
        row[I_OUT_WIDTH] = width
        out_slot[node.index] = int(row[I_OUT])
        if spec.opcode == Op.INPUT:
            input_slot = int(row[I_OUT])

        # Inputs whose last reader is this node free their slots now (after the
        # output was placed, so a node never writes over what it reads).
        for signal in {s.node.index: s for s in node.inputs.values()}.values():
            src = signal.node.index
            if last_read[src] == i:
                alloc.give_back(out_slot[src], widths[src])

        row[I_PARAM] = len(param_rows)
        for p in spec.params:
            where = f"{node.name}.{p.name}"
            value = node.values.get(p.name, p.default)
            if isinstance(value, (list, tuple, np.ndarray)):
                if len(value) != v:
                    raise GraphError(
                        f"{where}: {len(value)} values given for {v} voices"
                    )
                per_voice = list(value)
            else:
                per_voice = [value] * v
            try:
                numbers = [p.coerce(x, where) for x in per_voice]
            except ValueError as exc:
                raise GraphError(str(exc)) from None
            smoothing_s = p.smoothing_s
            if p.name in node.smoothing_ms and not p.choices:
                smoothing_s = node.smoothing_ms[p.name] / 1000.0
            tau = smoothing_s * sample_rate / _LN_1000
            slew = 0.0 if p.choices else node.slew_per_s.get(p.name, 0.0) / sample_rate
            lo = 0.0 if p.choices else p.minimum
            hi = float(len(p.choices) - 1) if p.choices else p.maximum
            param_refs[(node.name, p.name)] = ParamRef(
                node.name, p.name, len(param_rows), v, lo, hi, p.choices
            )
            param_rows.extend((x, tau, lo, hi, slew) for x in numbers)
        row[I_N_PARAM] = len(param_rows) - row[I_PARAM]

        options = {**spec.options, **node.options}
        if "seed" in spec.options and node.options.get("seed") is None:
            options["seed"] = node_seed(seed, node.name)
        options_of.append(options)
        size = int(spec.state_size(v, float(sample_rate), options))
        row[I_STATE] = sum(state_sizes)
        row[I_N_STATE] = size
        state_sizes.append(size)

    n_params = len(param_rows)
    params = np.zeros((N_PARAM_FIELDS, max(n_params, 1)), dtype=np.float64)
    if n_params:
        table = np.array(param_rows, dtype=np.float64)
        for field in (P_TARGET, P_GOOD, P_START, P_CURRENT):
            params[field, :n_params] = table[:, 0]
        params[P_TAU, :n_params] = table[:, 1]
        params[P_MIN, :n_params] = table[:, 2]
        params[P_MAX, :n_params] = table[:, 3]
        params[P_SLEW, :n_params] = table[:, 4]
        params[P_SLEW_BASE, :n_params] = table[:, 4]

    state = np.zeros(max(sum(state_sizes), 1), dtype=np.float64)
    for i, node in enumerate(order):
        row = instr[i]
        a, n = int(row[I_STATE]), int(row[I_N_STATE])
        p, m = int(row[I_PARAM]), int(row[I_N_PARAM])
        try:
            node.spec.init(
                state[a : a + n],
                params[P_TARGET, p : p + m].copy(),
                int(row[I_VOICES]),
                float(sample_rate),
                options_of[i],
            )
        except ValueError as error:
            raise GraphError(f"{node.name} ({node.spec.name}): {error}") from None

    out_width = _signal_width(out_signal, widths, "output")
    if out_width > 2:
        raise GraphError(
            f"output: {out_signal.node.name} has {out_width} channels; mix them to "
            "one or two first (mix or pan node)"
        )
    info = np.zeros(INFO_WIDTH, dtype=np.int64)
    info[INFO_N_INSTR] = len(order)
    info[INFO_OUT_SLOT] = out_slot[out_signal.node.index] + out_signal.offset
    info[INFO_OUT_STRIDE] = 1 if out_width == 2 else 0
    info[INFO_IN_SLOT] = input_slot
    info[INFO_GENERATION] = next(_generations)
    info[INFO_N_PARAMS] = n_params

    # The program's kernels must be in the kernel table before it can play.
    request_kernels(instr[:, I_OP].tolist())
    return Program(
        instr=instr,
        params=params,
        state=state,
        bufs=np.zeros((alloc.n_slots, max_block_size + _ROW_PAD), dtype=np.float64),
        info=info,
        sample_rate=int(sample_rate),
        max_block_size=int(max_block_size),
        seed=int(seed),
        node_names=[n.name for n in order],
        node_types=[n.spec.name for n in order],
        param_refs=param_refs,
        initial_state=state.copy(),
    )
