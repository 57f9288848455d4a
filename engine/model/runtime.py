"""Running a soundscape model with onnxruntime, without ever raising into the
loop that calls it.

    runner = ModelRunner("scenes/models/sleep.onnx", report=print)
    outputs = runner.run({"heart_rate_bpm": 58.0, "hrv_rmssd_ms": 55.0})
    # {'brightness': 0.31, 'motion': 0.28, ...}: only outputs that are good

The session is built for a machine that also plays audio: one intra-op and
one inter-op thread, sequential execution, and no spinning (an idle spinning
worker would burn the core the audio callback needs). Inputs go through one
preallocated ``[1, n_inputs]`` array, clamped to the contract's ranges (the
model was trained there); a missing input takes its contract default.

Faults never raise out of :meth:`ModelRunner.run`: a file that does not load
(missing, corrupt, no contract), tensors whose shape or type disagree with the
contract, a run that fails, an output that is NaN, infinite or outside its
range. Each is reported once through ``report`` with the file, the output and
the value, and the output keeps its last good value (the runner returns only
good outputs, so the targets already in the engine stay where they are, and
parameters that follow scene inputs keep doing so).

Threads: one control thread per runner (the model loop). ``run`` releases the
GIL inside onnxruntime. Never the audio thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.model.contract import ContractError, ModelContract, contract_from_metadata

__all__ = ["ModelError", "ModelRunner", "open_session", "session_options"]

# An output this far outside its range (relative to the range) is still
# float32 rounding of a value at the edge, not a fault.
RANGE_TOLERANCE = 1e-6


class ModelError(ContractError):
    """A model file that cannot be used; the message names the file."""


def session_options() -> ort.SessionOptions:
    """Options for a model that runs beside real-time audio: one thread each,
    sequential, no spinning, quiet."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: faults are ours to report
    return options


def open_session(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime session for ``path`` on the CPU, or ModelError saying
    why the file cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        return ort.InferenceSession(
            str(path), session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelError(f"{path}: cannot load the model: {first}") from None


def _check_tensor(
    path: Path, kind: str, tensor: ort.NodeArg, name: str, width: int
) -> None:
    if tensor.type != "tensor(float)":
        raise ModelError(
            f"{path}: {kind} {name!r} is {tensor.type}; the contract needs "
            "tensor(float) (float32)"
        )
    shape = list(tensor.shape)
    last = shape[-1] if shape else None
    batch_ok = len(shape) == 2 and (not isinstance(shape[0], int) or shape[0] == 1)
    if not batch_ok or last != width:
        raise ModelError(
            f"{path}: {kind} {name!r} has shape {shape}; the contract needs "
            f"[batch, {width}] (one column per {kind} it names)"
        )


def check_session(
    session: ort.InferenceSession, contract: ModelContract, path: Path
) -> None:
    """ModelError unless the session's tensors are the contract's."""
    inputs = {t.name: t for t in session.get_inputs()}
    outputs = {t.name: t for t in session.get_outputs()}
    for kind, tensors, name, width in (
        ("input", inputs, contract.input_tensor, len(contract.inputs)),
        ("output", outputs, contract.output_tensor, len(contract.outputs)),
    ):
        tensor = tensors.get(name)
        if tensor is None:
            raise ModelError(
                f"{path}: the contract names {kind} tensor {name!r}, the model "
                f"has {', '.join(tensors) or 'none'}"
            )
        _check_tensor(path, kind, tensor, name, width)
    if len(inputs) != 1:
        raise ModelError(
            f"{path}: a soundscape model has one input tensor, this one has "
            f"{len(inputs)} ({', '.join(inputs)})"
        )


class ModelRunner:
    """One loaded model: named inputs in, good named outputs out.

    Args:
        path: the ``.onnx`` file.
        report: called once per distinct fault with one line naming the file,
            the output and the value (default: nothing).

    ``ok`` is False when the model could not be loaded; ``run`` then returns
    ``{}`` and ``error`` says why.
    """

    def __init__(
        self, path: str | Path, report: Callable[[str], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.report = report
        self.contract: ModelContract | None = None
        self.session: ort.InferenceSession | None = None
        self.error: str | None = None
        self.faults = 0
        self._reported: set[str] = set()
        try:
            session = open_session(self.path)
            contract = contract_from_metadata(
                dict(session.get_modelmeta().custom_metadata_map), str(self.path)
            )
            check_session(session, contract, self.path)
        except ContractError as error:
            self._fault("load", f"{error}; keeping the scene's own settings")
            self.error = str(error)
            return
        self.session = session
        self.contract = contract
        self._input = np.zeros((1, len(contract.inputs)), dtype=np.float32)
        self._lows = np.array([p.minimum for p in contract.inputs])
        self._highs = np.array([p.maximum for p in contract.inputs])
        self._defaults = np.array([p.default for p in contract.inputs])
        self.last_good = {p.name: p.default for p in contract.outputs}

    @property
    def ok(self) -> bool:
        return self.session is not None

    def _fault(self, key: str, message: str) -> None:
        self.faults += 1
        if key in self._reported:
            return
        self._reported.add(key)
        if self.report is not None:
            self.report(message)

    def state_vector(self, values: Mapping[str, float]) -> np.ndarray:
        """The preallocated input row for ``values`` (by input name; missing or
        non-finite values take the default; all clamped to the contract)."""
        assert self.contract is not None
        row = self._defaults.copy()
        for k, name in enumerate(self.contract.input_names):
            value = values.get(name)
            if value is not None and math.isfinite(value):
                row[k] = value
        self._input[0] = np.clip(row, self._lows, self._highs)
        return self._input

    def run(self, values: Mapping[str, float]) -> dict[str, float]:
        """Run once: the outputs that came out finite and in range (the others
        keep their last good value in :attr:`last_good`, and are reported)."""
        if self.session is None or self.contract is None:
            return {}
        contract = self.contract
        try:
            feed = {contract.input_tensor: self.state_vector(values)}
            (result,) = self.session.run([contract.output_tensor], feed)
        except Exception as error:  # noqa: BLE001 - the loop must never see it
            self._fault("run", f"{self.path}: the model failed to run: {error}")
            return {}
        result = np.asarray(result)
        if result.shape != (1, len(contract.outputs)):
            self._fault(
                "shape",
                f"{self.path}: output {contract.output_tensor!r} came out with "
                f"shape {list(result.shape)}, the contract needs "
                f"[1, {len(contract.outputs)}]; keeping the last good targets",
            )
            return {}
        good: dict[str, float] = {}
        for port, value in zip(contract.outputs, result[0].tolist(), strict=True):
            slack = RANGE_TOLERANCE * (port.maximum - port.minimum)
            if not math.isfinite(value):
                kind = "non-finite"
            elif not port.minimum - slack <= value <= port.maximum + slack:
                kind = "out of range"
            else:
                value = min(max(value, port.minimum), port.maximum) + 0.0  # no -0
                good[port.name] = value
                self.last_good[port.name] = value
                continue
            self._fault(
                f"{kind}:{port.name}",
                f"{self.path}: output {port.name!r} = {value:g} is {kind} "
                f"(expected {port.minimum:g}..{port.maximum:g}); keeping its last "
                f"good value {self.last_good[port.name]:g}",
            )
        return good
