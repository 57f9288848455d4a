"""Build a DSP graph in Python and compile it into a flat program.

Example::

    from engine.graph import Graph, compile_graph

    g = Graph()
    tone = g.node("sine", frequency_hz=440.0, amplitude=0.2)
    g.output(tone)
    program = compile_graph(g, sample_rate=48000)

Audio thread: no.
"""

from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError, Node, Signal
from engine.graph.program import Program

__all__ = ["Graph", "GraphError", "Node", "Program", "Signal", "compile_graph"]
