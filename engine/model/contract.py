"""The model contract: what a model reads and writes, by name, with units.

A soundscape model is an ONNX graph with one float32 input of shape
``[batch, n_inputs]`` and one float32 output of shape ``[batch, n_outputs]``.
What each column means is stored as JSON in the model's metadata
(``metadata_props`` key :data:`CONTRACT_KEY`), so a scene binds outputs to
layer parameters by name and anyone can bring their own model::

    {"format": 1, "name": "sleep", "version": "1.0.0",
     "description": "...",
     "input_tensor": "state", "output_tensor": "targets",
     "inputs":  [{"name": "heart_rate_bpm", "meaning": "...", "unit": "bpm",
                  "minimum": 40, "maximum": 180, "default": 60}, ...],
     "outputs": [{"name": "brightness", "meaning": "...", "unit": "",
                  "minimum": 0, "maximum": 1, "default": 0.5}, ...]}

The order of ``inputs`` and ``outputs`` is the order of the tensor columns.

    contract = read_contract("scenes/models/sleep.onnx")
    contract.input_names          # ('heart_rate_bpm', 'hrv_rmssd_ms', ...)

Errors are :class:`ContractError` naming the file and the field at fault.

Threads: any control thread (reading a contract opens the file); never the
audio thread.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONTRACT_KEY",
    "FORMAT_VERSION",
    "ContractError",
    "ModelContract",
    "Port",
    "contract_from_json",
    "read_contract",
]

CONTRACT_KEY = "soundscape.contract"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ContractError(ValueError):
    """A model whose contract is missing or wrong; the message names the file
    and the field."""


@dataclass(frozen=True)
class Port:
    """One named input or output column: what it means, its unit, its range
    and the value to assume when nothing better is known."""

    name: str
    meaning: str
    unit: str
    minimum: float
    maximum: float
    default: float

    def __post_init__(self) -> None:
        # One number type, so a contract always serialises the same bytes.
        for key in ("minimum", "maximum", "default"):
            object.__setattr__(self, key, float(getattr(self, key)))

    def describe(self) -> str:
        """``heart_rate_bpm (bpm, 40..180, default 60): the listener's...``"""
        unit = f"{self.unit}, " if self.unit else ""
        return (
            f"{self.name} ({unit}{self.minimum:g}..{self.maximum:g}, default "
            f"{self.default:g}): {self.meaning}"
        )


@dataclass(frozen=True)
class ModelContract:
    """A model's name, version, description, tensors and named columns."""

    name: str
    version: str
    description: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    input_tensor: str = "state"
    output_tensor: str = "targets"

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.outputs)

    def output(self, name: str) -> Port:
        """The output called ``name`` (KeyError if none)."""
        for port in self.outputs:
            if port.name == name:
                return port
        raise KeyError(name)

    def to_json(self) -> str:
        """The JSON stored in the model (keys sorted: byte-stable)."""
        data = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "input_tensor": self.input_tensor,
            "output_tensor": self.output_tensor,
            "inputs": [asdict(p) for p in self.inputs],
            "outputs": [asdict(p) for p in self.outputs],
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ContractError(f"{where}: {key!r} must be text, got {value!r}")
    return value


def _number(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(f"{where}: {key!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ContractError(f"{where}: {key!r} must be finite, got {value!r}")
    return float(value)


def _ports(data: dict[str, Any], key: str, where: str) -> tuple[Port, ...]:
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise ContractError(f"{where}: {key!r} must be a non-empty list")
    ports: list[Port] = []
    for i, item in enumerate(items):
        at = f"{where}: {key}[{i}]"
        if not isinstance(item, dict):
            raise ContractError(f"{at}: expected an object, got {item!r}")
        name = _text(item, "name", at)
        at = f"{where}: {key}[{i}] ({name})"
        if not _NAME.match(name):
            raise ContractError(f"{at}: names are lower_case words (a-z, 0-9, _)")
        if name in (p.name for p in ports):
            raise ContractError(f"{at}: the name is used twice")
        port = Port(
            name=name,
            meaning=_text(item, "meaning", at),
            unit=_text(item, "unit", at),
            minimum=_number(item, "minimum", at),
            maximum=_number(item, "maximum", at),
            default=_number(item, "default", at),
        )
        if not port.minimum < port.maximum:
            raise ContractError(f"{at}: minimum must be below maximum")
        if not port.minimum <= port.default <= port.maximum:
            raise ContractError(f"{at}: default {port.default:g} is outside its range")
        ports.append(port)
    return tuple(ports)


def contract_from_json(text: str, file: str = "<model>") -> ModelContract:
    """Parse and check a contract's JSON; ContractError names ``file``.

    >>> c = ModelContract("m", "1", "d", (Port("x", "x", "", 0, 1, 0),),
    ...                   (Port("y", "y", "", 0, 1, 0),))
    >>> contract_from_json(c.to_json()) == c
    True
    """
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ContractError(f"{file}: {CONTRACT_KEY} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{file}: {CONTRACT_KEY} must be a JSON object")
    version = data.get("format")
    if version != FORMAT_VERSION:
        raise ContractError(
            f"{file}: contract format {version!r} is not supported "
            f"(this engine reads format {FORMAT_VERSION})"
        )
    return ModelContract(
        name=_text(data, "name", file),
        version=_text(data, "version", file),
        description=_text(data, "description", file),
        inputs=_ports(data, "inputs", file),
        outputs=_ports(data, "outputs", file),
        input_tensor=_text(data, "input_tensor", file),
        output_tensor=_text(data, "output_tensor", file),
    )


def contract_from_metadata(metadata: dict[str, str], file: str) -> ModelContract:
    """The contract in a model's custom metadata map."""
    text = metadata.get(CONTRACT_KEY)
    if text is None:
        raise ContractError(
            f"{file}: no {CONTRACT_KEY!r} in the model's metadata (a soundscape "
            "model names its inputs and outputs there; see docs/models.md)"
        )
    return contract_from_json(text, file)


def read_contract(path: str | Path) -> ModelContract:
    """Read and check the contract of an ``.onnx`` file (ContractError, or
    OSError-like ContractError for a file that cannot be read as a model)."""
    from engine.model.runtime import open_session

    session = open_session(path)
    meta = session.get_modelmeta().custom_metadata_map
    return contract_from_metadata(dict(meta), str(path))
