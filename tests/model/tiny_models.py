"""Tiny ONNX models for the model tests, built with the onnx helper API: one
input column x in -1..1 and outputs in 0..1, with a chosen graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from engine.model.contract import CONTRACT_KEY, ModelContract, Port


def contract(n_inputs: int = 1, n_outputs: int = 1) -> ModelContract:
    return ModelContract(
        "tiny",
        "0.1",
        "a test model",
        tuple(
            Port(f"x{k}", "test input", "", -1.0, 1.0, 0.25) for k in range(n_inputs)
        ),
        tuple(
            Port(f"y{k}", "test output", "", 0.0, 1.0, 0.5) for k in range(n_outputs)
        ),
    )


def write_model(
    path: Path,
    op: str,
    *,
    contract_: ModelContract | None = None,
    input_type: int = TensorProto.FLOAT,
    input_width: int = 1,
    output_width: int = 1,
    metadata: bool = True,
    scale: float = 1.0,
) -> Path:
    """``targets = op(state * scale)`` (op: Identity, Sqrt, Neg...), declared
    with the given type and widths."""
    c = contract_ or contract()
    nodes = [
        helper.make_node("Cast", ["state"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["as_float", "scale"], ["scaled"]),
        helper.make_node(op, ["scaled"], ["targets"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("state", input_type, ["batch", input_width])],
        [
            helper.make_tensor_value_info(
                "targets", TensorProto.FLOAT, ["batch", output_width]
            )
        ],
        initializer=[numpy_helper.from_array(np.float32(scale), "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {CONTRACT_KEY: c.to_json()})
    path.write_bytes(model.SerializeToString())
    return path
