"""The model contract: JSON round trip, every field checked by name, and the
contract read back from a shipped model's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import contract, write_model  # tests/model, on the path

from engine.model.contract import (
    ContractError,
    ModelContract,
    Port,
    contract_from_json,
    read_contract,
)
from engine.model.runtime import ModelError

MODELS = Path(__file__).parents[2] / "scenes" / "models"


def test_round_trip_keeps_every_field():
    original = ModelContract(
        "sleep",
        "2.1.0",
        "a description",
        (Port("heart_rate_bpm", "the heart", "bpm", 40, 180, 60),),
        (Port("brightness", "how bright", "", 0, 1, 0.5),),
        input_tensor="x",
        output_tensor="y",
    )
    assert contract_from_json(original.to_json()) == original
    # Byte-stable: the same contract always serialises the same.
    assert original.to_json() == contract_from_json(original.to_json()).to_json()


def _data() -> dict:
    return json.loads(contract().to_json())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=2), "format 2 is not supported"),
        (lambda d: d.pop("name"), "'name' must be text"),
        (lambda d: d.update(inputs=[]), "'inputs' must be a non-empty list"),
        (
            lambda d: d["inputs"][0].update(minimum="low"),
            r"inputs\[0\] \(x0\).*'minimum'",
        ),
        (lambda d: d["outputs"][0].update(maximum=-5), r"outputs\[0\] \(y0\).*below"),
        (lambda d: d["outputs"][0].update(default=3), "default 3 is outside"),
        (lambda d: d["inputs"][0].update(name="Heart Rate"), "lower_case"),
        (lambda d: d["inputs"].append(dict(d["inputs"][0])), "used twice"),
        (lambda d: d["outputs"][0].update(maximum=float("inf")), "finite"),
    ],
)
def test_a_bad_contract_names_the_file_and_the_field(change, message):
    data = _data()
    change(data)
    with pytest.raises(ContractError, match=message) as caught:
        contract_from_json(json.dumps(data), "my.onnx")
    assert str(caught.value).startswith("my.onnx")


def test_text_that_is_not_json_is_refused():
    with pytest.raises(ContractError, match="my.onnx: soundscape.contract is not JSON"):
        contract_from_json("{nope", "my.onnx")


def test_shipped_models_carry_their_contract():
    for name in ("focus", "sleep", "forest"):
        c = read_contract(MODELS / f"{name}.onnx")
        assert c.name == name
        assert c.outputs and all(0 <= p.default <= 1 for p in c.outputs)
        assert all(p.meaning and p.minimum < p.maximum for p in c.inputs)
    assert "heart_rate_bpm" in read_contract(MODELS / "sleep.onnx").input_names


def test_a_model_without_a_contract_says_so(tmp_path):
    path = write_model(tmp_path / "bare.onnx", "Identity", metadata=False)
    with pytest.raises(ContractError, match="bare.onnx: no 'soundscape.contract'"):
        read_contract(path)


def test_a_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="nothing.onnx: no such model file"):
        read_contract(tmp_path / "nothing.onnx")
