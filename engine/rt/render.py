"""Offline rendering through the same compiled code the audio callback runs.

Audio thread: no (it calls audio-thread code from the caller's thread).
"""

from __future__ import annotations

import numpy as np

from engine.dsp.interpreter import render_program
from engine.dsp.layout import INFO_OUT_SLOT, INFO_OUT_STRIDE
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph
from engine.graph.program import Program


def render_graph(
    graph: Graph | Program,
    n_frames: int,
    block_size: int = 128,
    sample_rate: int = 48000,
    seed: int = 0,
) -> np.ndarray:
    """Render a graph's raw output (no master bus) to a ``[2, n_frames]`` array.

    Meant for tests and tools that look at one node's physics; the engine's
    ``render`` adds crossfades, timed events and the master limiter.

    >>> g = Graph(); g.output(g.node("sine", frequency_hz=1000.0))
    >>> render_graph(g, 480).shape
    (2, 480)
    """
    if isinstance(graph, Program):
        program = graph
        sample_rate = program.sample_rate
    else:
        program = compile_graph(
            graph, sample_rate=sample_rate, max_block_size=block_size, seed=seed
        )
    if block_size > program.max_block_size:
        raise ValueError(
            f"block_size {block_size} exceeds the program's max_block_size "
            f"{program.max_block_size}"
        )
    out = np.zeros((2, n_frames), dtype=np.float64)
    left = int(program.info[INFO_OUT_SLOT])
    right = left + int(program.info[INFO_OUT_STRIDE])
    arrays = program.arrays
    bufs = program.bufs
    pos = 0
    while pos < n_frames:
        n = min(block_size, n_frames - pos)
        render_program(arrays, float(sample_rate), n)
        out[0, pos : pos + n] = bufs[left, :n]
        out[1, pos : pos + n] = bufs[right, :n]
        pos += n
    return out
