"""The graph compiler: layout, dead nodes, buffer reuse, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dsp.layout import I_OUT, P_TARGET
from engine.graph import Graph, GraphError, compile_graph
from engine.rt.render import render_graph


def _chain() -> Graph:
    g = Graph()
    tone = g.node("sine", name="tone", frequency_hz=[220.0, 330.0], amplitude=0.5)
    unused = g.node("sine", name="unused", frequency_hz=1000.0)
    level = g.node("gain", tone, name="level", gain_db=-6.0)
    g.node("gain", unused, name="also_unused")
    g.output(g.node("pan", level, name="stereo", pan=[-0.5, 0.5]))
    return g


def test_golden_program_dump_drops_dead_nodes() -> None:
    program = compile_graph(_chain(), sample_rate=48000, max_block_size=256)
    assert program.dump() == (
        "program: 3 nodes, 5 slots, 10 params, 2 state\n"
        "  0 sine             tone           v=2 out=1+2 in=[] p=0+4 s=0+2\n"
        "  1 gain             level          v=2 out=3+2 in=[1] p=4+4 s=2+0\n"
        "  2 pan              stereo         v=2 out=1+2 in=[3] p=8+2 s=2+0\n"
        "out=1 stride=1 in=-1"
    )


def test_buffers_are_reused_once_their_last_reader_ran() -> None:
    g = Graph()
    signal = g.node("sine", name="s0")
    for k in range(1, 20):
        signal = g.node("gain", signal, name=f"g{k}")
    g.output(signal)
    program = compile_graph(g)
    # A chain needs two buffers in turn, plus the zero slot, however long it is.
    assert program.bufs.shape[0] == 3
    outs = program.instr[:, I_OUT]
    assert set(outs.tolist()) == {1, 2}


def test_a_node_never_writes_over_its_own_input() -> None:
    program = compile_graph(_chain())
    for row in program.instr:
        assert row[I_OUT] != row[8] or row[8] == 0


def test_chain_output_matches_numpy_reference() -> None:
    x = render_graph(_chain(), 4800, block_size=64)
    t = np.arange(1, 4801) / 48000.0
    a = 0.5 * 10 ** (-6 / 20)
    # sine starts at phase 0: sample n is sin(2 pi f n / fs); out[0] is n = 0.
    s220 = a * np.sin(2 * np.pi * 220.0 * (t - 1 / 48000.0))
    s330 = a * np.sin(2 * np.pi * 330.0 * (t - 1 / 48000.0))
    gl0, gr0 = np.cos(0.25 * np.pi * 0.5), np.sin(0.25 * np.pi * 0.5)
    gl1, gr1 = np.cos(0.25 * np.pi * 1.5), np.sin(0.25 * np.pi * 1.5)
    np.testing.assert_allclose(x[0], gl0 * s220 + gl1 * s330, atol=2e-6)
    np.testing.assert_allclose(x[1], gr0 * s220 + gr1 * s330, atol=2e-6)


def test_unknown_node_type_suggests_a_near_name() -> None:
    with pytest.raises(GraphError, match=r"unknown node type 'sien'.*'sine'"):
        Graph().node("sien")


def test_unknown_setting_names_node_and_suggests() -> None:
    with pytest.raises(
        GraphError, match=r"tone: sine has no .* 'frequency'.*'frequency_hz'"
    ):
        Graph().node("sine", name="tone", frequency=440.0)


def test_out_of_range_and_nonfinite_values_are_refused() -> None:
    g = Graph()
    g.output(g.node("gain", name="level", gain_db=float("nan")))
    with pytest.raises(GraphError, match="level.gain_db must be finite"):
        compile_graph(g)
    g = Graph()
    g.output(g.node("pan", name="p", pan=3.0))
    with pytest.raises(GraphError, match=r"p.pan=3 is outside \[-1, 1\]"):
        compile_graph(g)


def test_width_mismatch_is_explained() -> None:
    g = Graph()
    three = g.node("sine", name="three", frequency_hz=[1.0, 2.0, 3.0])
    two = g.node("sine", name="two", voices=2, fm=three)
    g.output(two)
    with pytest.raises(
        GraphError, match="two.fm: input has 3 channels but the node has 2"
    ):
        compile_graph(g)


def test_missing_output_and_too_wide_output() -> None:
    with pytest.raises(GraphError, match="no output"):
        compile_graph(Graph())
    g = Graph()
    g.output(g.node("sine", voices=3))
    with pytest.raises(GraphError, match="mix them to one or two"):
        compile_graph(g)


def test_channel_selection_feeds_one_voice() -> None:
    g = Graph()
    pair = g.node("sine", name="pair", frequency_hz=[1000.0, 3000.0])
    g.output(pair[1])
    x = render_graph(g, 48000)
    assert np.argmax(np.abs(np.fft.rfft(x[0]))) == 3000
    np.testing.assert_array_equal(x[0], x[1])  # mono output goes to both sides


def test_set_target_validates_and_clamps() -> None:
    program = compile_graph(_chain())
    program.set_target("level", "gain_db", 100.0)
    ref = program.param("level", "gain_db")
    assert np.all(program.params[P_TARGET, ref.column : ref.column + 2] == 24.0)
    with pytest.raises(ValueError, match="not finite"):
        program.set_target("level", "gain_db", float("inf"))
    with pytest.raises(KeyError, match="no parameter 'gain' on node 'level'"):
        program.param("level", "gain")


def test_loading_another_graph_does_not_compile_numba_code() -> None:
    from engine.dsp.interpreter import render_program

    render_graph(_chain(), 64)
    before = len(render_program.signatures)
    g = Graph()
    g.output(g.node("sine", voices=5, frequency_hz=np.linspace(100, 500, 5))[0])
    render_graph(g, 64)
    assert len(render_program.signatures) == before
