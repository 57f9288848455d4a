"""The kernel table: every node has its kernel in it, and bad entries are refused."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from numba import njit

from engine.dsp.dispatch import (
    KERNEL_TABLE_SIZE,
    install_kernels,
    installed_kernels,
    kernel_entry,
)
from engine.dsp.interpreter import KERNELS, ensure_kernels
from engine.dsp.nodes import node_types
from engine.dsp.opcodes import Op
from engine.graph import Graph, compile_graph
from engine.rt.render import render_graph


def test_a_compiled_program_has_its_kernels_in_the_table() -> None:
    g = Graph()
    g.output(g.node("ring_mod", g.node("sine"), g.node("triangle")))
    compile_graph(g, sample_rate=48000, max_block_size=128)
    table = installed_kernels()
    for op in (Op.SINE, Op.TRIANGLE, Op.RING_MOD):
        assert table[int(op)] == kernel_entry(KERNELS[op])


def test_every_node_type_with_a_kernel_is_in_the_table() -> None:
    ensure_kernels(KERNELS)
    table = installed_kernels()
    for name, spec in node_types().items():
        if spec.opcode == Op.INPUT:
            assert int(Op.INPUT) not in table
            continue
        assert int(spec.opcode) in table, name
        assert table[int(spec.opcode)] == kernel_entry(KERNELS[spec.opcode])
    # ... and every kernel's node is known to node_types() (which imports the
    # kernel modules itself, without the interpreter).
    assert set(KERNELS) <= {spec.opcode for spec in node_types().values()}


def test_an_opcode_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        install_kernels({KERNEL_TABLE_SIZE: KERNELS[Op.GAIN]})


def test_a_kernel_that_returns_a_value_is_refused() -> None:
    @njit
    def returns_a_value(bufs, row, p0, p1, state, sample_rate, n_frames):
        return n_frames

    with pytest.raises(TypeError, match="return nothing"):
        kernel_entry(returns_a_value)


def test_the_interpreter_calls_the_kernel_of_each_row() -> None:
    # A 1 kHz sine at 48 kHz, then a gain of -6.02 dB: both kernels ran.
    g = Graph()
    tone = g.node("sine", frequency_hz=1000.0, amplitude=1.0)
    g.output(g.node("gain", tone, gain_db=-6.0206))
    out = render_graph(g, 4800)
    expected = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(4800) / 48000)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_kernels_asked_for_before_the_interpreter_loads_with_it(run_python) -> None:  # type: ignore[no-untyped-def]
    """Compiling a graph to check it loads no kernel; importing the interpreter
    then loads the ones that graph asked for."""
    probe = (
        "import sys\n"
        "from engine.graph import Graph, compile_graph\n"
        "from engine.dsp.dispatch import installed_kernels\n"
        "g = Graph(); g.output(g.node('pan', g.node('saw')))\n"
        "compile_graph(g)\n"
        "print(len(installed_kernels()), 'engine.dsp.interpreter' in sys.modules)\n"
        "import engine.dsp.interpreter\n"
        "print(sorted(installed_kernels()))\n"
    )
    first, second = run_python(probe).strip().splitlines()[-2:]
    assert first == "0 False"
    assert {int(Op.SAW), int(Op.PAN)} <= set(ast.literal_eval(second))


def test_node_types_know_every_node_the_interpreter_has_a_kernel_for(
    run_python,
) -> None:  # type: ignore[no-untyped-def]
    # In a fresh process, so that no earlier import has registered a node.
    probe = (
        "from engine.dsp.nodes import node_types\n"
        "names = {spec.opcode for spec in node_types().values()}\n"
        "from engine.dsp.interpreter import KERNELS\n"
        "print(sorted(int(op) for op in KERNELS if op not in names))\n"
    )
    assert run_python(probe).strip().splitlines()[-1] == "[]"
