"""Training the shipped models from a table of designed behaviours.

    python -m engine.model.training            # writes scenes/models/*.onnx
    python -m engine.model.training --out DIR --seed 7

Each shipped model (``focus``, ``sleep``, ``forest``) is defined by its
contract (named inputs and outputs with units and ranges) and a *rule*: a
small numpy function that says, in numbers, what the soundscape should do for
a given state. The rules implement the rows of :data:`BEHAVIOURS` (the same
table, in words and numbers, is docs/models.md). Training draws random states
(seeded), labels them with the rule, and fits a small MLP with our own numpy
forward pass and Adam loop::

    x (inputs) -> (x - centre) / half_range -> tanh(x W1 + b1) -> sigmoid(h W2 + b2)

Every shipped output is a 0..1 control (brightness, motion, level...): the
scene's bindings map it to Hz or dB, so one model can drive different scenes
and float32 rounding stays far below 1e-5. The fitted network is exported
with the ``onnx`` helper API (``pip install '.[train]'``; the engine itself
only needs onnxruntime). The same seed gives byte-identical files.

Threads: a command-line tool (one thread); never imported by the engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.model.contract import CONTRACT_KEY, ModelContract, Port

__all__ = [
    "BEHAVIOURS",
    "MODELS",
    "Behaviour",
    "Mlp",
    "ModelDesign",
    "build_onnx",
    "forward",
    "main",
    "train",
]

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "scenes" / "models"
DEFAULT_SEED = 20261123
HIDDEN = 24
N_SAMPLES = 4000
N_STEPS = 3000
LEARNING_RATE = 0.02
OPSET = 17
IR_VERSION = 8


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def _port(name: str, meaning: str, unit: str, low: float, high: float, default: float):
    return Port(name, meaning, unit, float(low), float(high), float(default))


def _control(name: str, meaning: str, default: float) -> Port:
    return _port(name, meaning, "", 0.0, 1.0, default)


HEART_RATE = _port("heart_rate_bpm", "the listener's heart rate", "bpm", 40, 180, 65)
HRV = _port(
    "hrv_rmssd_ms", "heart-rate variability, RMSSD over a minute", "ms", 0, 200, 40
)
TREND = _port(
    "hr_trend_bpm_per_min", "how fast the heart rate moves, rising > 0",
    "bpm/min", -30, 30, 0,
)  # fmt: skip
MINUTES = _port(
    "minutes_since_start", "minutes since the scene started", "min", 0, 120, 0
)
TIME_OF_DAY = _port("time_of_day_h", "local time of day", "h", 0, 24, 14)


# Each rule takes a dict of input columns (float64 arrays) and returns the
# output columns in contract order. Comments give the designed behaviour.


def _sleep_rule(x: dict[str, np.ndarray]) -> list[np.ndarray]:
    # How asleep the body looks: heart rate down to ~52, RMSSD up to ~75 ms.
    calm = 0.5 * _clip((72.0 - x["heart_rate_bpm"]) / 20.0) + 0.5 * _clip(
        (x["hrv_rmssd_ms"] - 25.0) / 50.0
    )
    # Toward the sleep timer's end (45 min), darker and quieter regardless.
    progress = _clip(x["minutes_since_start"] / 45.0)
    settle = _clip(0.65 * calm + 0.35 * progress)
    # Waking: the heart rate rising fast. Then a gentle, steady bed comes
    # back (low motion, mid level, the bed up), never silence.
    wake = _clip((x["hr_trend_bpm_per_min"] - 3.0) / 9.0)
    normal = [
        0.8 - 0.7 * settle,  # brightness
        0.85 - 0.7 * settle,  # motion
        0.9 - 0.7 * settle,  # level
        0.9 - 0.4 * settle,  # bed
    ]
    waking = [0.3, 0.1, 0.45, 0.95]
    return [(1.0 - wake) * n + wake * w for n, w in zip(normal, waking, strict=True)]


def _focus_rule(x: dict[str, np.ndarray]) -> list[np.ndarray]:
    # Stress: heart rate up from 75 and RMSSD down from 35 ms.
    stress = 0.5 * _clip((x["heart_rate_bpm"] - 75.0) / 25.0) + 0.5 * _clip(
        (35.0 - x["hrv_rmssd_ms"]) / 20.0
    )
    # Low arousal late in the day: a slow heart after 14 h, fully by 18 h.
    late = _clip((x["time_of_day_h"] - 14.0) / 4.0)
    low = _clip((68.0 - x["heart_rate_bpm"]) / 12.0) * late * (1.0 - stress)
    return [
        0.5 - 0.35 * stress + 0.2 * low,  # brightness
        0.75 - 0.45 * stress + 0.1 * low,  # activity
        0.5 - 0.4 * stress + 0.25 * low,  # entrainment
        0.4 - 0.25 * stress + 0.35 * low,  # rhythm
    ]


def _forest_rule(x: dict[str, np.ndarray]) -> list[np.ndarray]:
    danger, intensity = x["danger"], x["intensity"]
    combat = _clip(x["mode"] - 1.0)  # state 2 (combat) and beyond
    return [
        _clip(0.2 + 0.6 * danger + 0.2 * intensity + 0.1 * combat),  # tension
        _clip(0.3 + 0.5 * intensity + 0.2 * danger),  # density
        _clip(0.35 + 0.45 * danger + 0.2 * intensity),  # brightness
    ]


@dataclass(frozen=True)
class ModelDesign:
    """A model to train: its contract, its rule and where it samples states."""

    contract: ModelContract
    rule: Callable[[dict[str, np.ndarray]], list[np.ndarray]]


# Half the training states come from where listeners usually are, so the fit
# is closest where the behaviours live; the other half cover whole ranges.
TYPICAL = {
    "heart_rate_bpm": (45.0, 110.0),
    "hrv_rmssd_ms": (5.0, 110.0),
    "hr_trend_bpm_per_min": (-10.0, 20.0),
    "minutes_since_start": (0.0, 60.0),
}


def _design(
    name: str,
    description: str,
    inputs: tuple[Port, ...],
    outputs: tuple[Port, ...],
    rule: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
) -> ModelDesign:
    contract = ModelContract(name, "1.0.0", description, inputs, outputs)
    return ModelDesign(contract, rule)


MODELS: dict[str, ModelDesign] = {
    "sleep": _design(
        "sleep",
        "Falling asleep: slower, darker, quieter as the heart settles and the "
        "timer runs; a gentle steady bed when the listener wakes.",
        (HEART_RATE, HRV, TREND, MINUTES),
        (
            _control("brightness", "how bright the waves and the bed are", 0.6),
            _control("motion", "how fast the waves swell (modulation rate)", 0.65),
            _control("level", "level of the moving layers (waves, pulse)", 0.7),
            _control("bed", "level of the steady noise bed", 0.78),
        ),
        _sleep_rule,
    ),
    "focus": _design(
        "focus",
        "Focus: calmer and softer under stress; a little brighter and more "
        "rhythmic when arousal is low late in the day.",
        (HEART_RATE, HRV, TIME_OF_DAY),
        (
            _control("brightness", "how bright the rain is", 0.5),
            _control("activity", "level of the rain and the drone", 0.75),
            _control("entrainment", "depth of the amplitude entrainment", 0.5),
            _control("rhythm", "how rhythmic: the rate of rain drops", 0.4),
        ),
        _focus_rule,
    ),
    "forest": _design(
        "forest",
        "Game forest: danger and intensity raise the tension layers, the "
        "density and the brightness (states stay with the scene).",
        (
            _port("danger", "how close the threat is", "", 0, 1, 0),
            _port("intensity", "how much is going on", "", 0, 1, 0.3),
            _port(
                "mode", "the scene's state: 0 explore, 1 tension, 2 combat", "", 0, 8, 0
            ),
        ),
        (
            _control("tension", "level of the tension layers (dread, pulse)", 0.26),
            _control("density", "how busy the wind's gusts are", 0.45),
            _control("brightness", "how bright the wind is", 0.41),
        ),
        _forest_rule,
    ),
}


@dataclass(frozen=True)
class Behaviour:
    """One row of the designed-behaviour table: from one state to another,
    which outputs move which way (+1 up, -1 down), and what it sounds like."""

    model: str
    name: str
    words: str
    before: dict[str, float]
    after: dict[str, float]
    moves: dict[str, int]
    heard: str


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        "sleep",
        "falling asleep",
        "heart rate falls and HRV rises",
        {"heart_rate_bpm": 68, "hrv_rmssd_ms": 30},
        {"heart_rate_bpm": 54, "hrv_rmssd_ms": 70},
        {"brightness": -1, "motion": -1, "level": -1},
        "spectral centroid, loudness and modulation rate fall",
    ),
    Behaviour(
        "sleep",
        "toward the timer's end",
        "minutes since start go from 0 to 45, the heart unchanged",
        {"minutes_since_start": 0},
        {"minutes_since_start": 45},
        {"brightness": -1, "motion": -1, "level": -1},
        "spectral centroid and loudness fall",
    ),
    Behaviour(
        "sleep",
        "waking",
        "asleep (54 bpm, 70 ms), then the heart rate jumps (trend +15 bpm/min)",
        {"heart_rate_bpm": 54, "hrv_rmssd_ms": 70, "minutes_since_start": 30},
        {
            "heart_rate_bpm": 72,
            "hrv_rmssd_ms": 35,
            "minutes_since_start": 30,
            "hr_trend_bpm_per_min": 15,
        },
        {"bed": 1, "motion": -1},
        "the steady bed comes up (not silence), the swell stays slow",
    ),
    Behaviour(
        "focus",
        "stress",
        "heart rate 70 -> 95 bpm, RMSSD 45 -> 15 ms",
        {"heart_rate_bpm": 70, "hrv_rmssd_ms": 45},
        {"heart_rate_bpm": 95, "hrv_rmssd_ms": 15},
        {"brightness": -1, "activity": -1, "entrainment": -1},
        "rain and drone quieter, rain darker, entrainment shallower",
    ),
    Behaviour(
        "focus",
        "low arousal late in the day",
        "58 bpm at 10 h, then 58 bpm at 18 h",
        {"heart_rate_bpm": 58, "hrv_rmssd_ms": 45, "time_of_day_h": 10},
        {"heart_rate_bpm": 58, "hrv_rmssd_ms": 45, "time_of_day_h": 18},
        {"brightness": 1, "rhythm": 1, "entrainment": 1},
        "rain brighter, more drops, deeper entrainment",
    ),
    Behaviour(
        "forest",
        "danger",
        "danger 0 -> 1 (intensity 0.3), in the tension state",
        {"danger": 0, "mode": 1},
        {"danger": 1, "mode": 1},
        {"tension": 1, "brightness": 1, "density": 1},
        "the dread layer louder within its glide",
    ),
    Behaviour(
        "forest",
        "intensity",
        "intensity 0 -> 1 (danger 0.5), in the tension state",
        {"intensity": 0, "danger": 0.5, "mode": 1},
        {"intensity": 1, "danger": 0.5, "mode": 1},
        {"tension": 1, "density": 1, "brightness": 1},
        "the dread layer louder, the wind brighter and gustier",
    ),
)


def rule_outputs(model: str, values: dict[str, float]) -> dict[str, float]:
    """What the rule of ``model`` asks for at one state (missing inputs take
    their contract defaults)."""
    design = MODELS[model]
    x = {
        p.name: np.array([float(values.get(p.name, p.default))])
        for p in design.contract.inputs
    }
    columns = design.rule(x)
    return {
        p.name: float(np.clip(c[0], p.minimum, p.maximum))
        for p, c in zip(design.contract.outputs, columns, strict=True)
    }


@dataclass
class Mlp:
    """The fitted network's float32 arrays (see the module docstring)."""

    centre: np.ndarray
    inv_half: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray


def forward(mlp: Mlp, x: np.ndarray) -> np.ndarray:
    """The network's own forward pass in float32, operation for operation as
    the exported ONNX graph does it: ``[n, inputs] -> [n, outputs]``."""
    x = np.asarray(x, dtype=np.float32)
    z = (x - mlp.centre) * mlp.inv_half
    h = np.tanh(z @ mlp.w1 + mlp.b1)
    y = h @ mlp.w2 + mlp.b2
    return (np.float32(1.0) / (np.float32(1.0) + np.exp(-y))).astype(np.float32)


def sample_states(design: ModelDesign, n: int, rng: np.random.Generator):
    """Random states over each input's whole range (labels come from the rule)."""
    columns = {}
    for p in design.contract.inputs:
        low, high = TYPICAL.get(p.name, (p.minimum, p.maximum))
        columns[p.name] = np.concatenate(
            [
                rng.uniform(p.minimum, p.maximum, n - n // 2),
                rng.uniform(low, high, n // 2),
            ]
        )
    x = np.stack([columns[p.name] for p in design.contract.inputs], axis=1)
    y = np.stack(design.rule(columns), axis=1)
    return x, np.clip(y, 0.0, 1.0)


def train(design: ModelDesign, seed: int = DEFAULT_SEED) -> tuple[Mlp, float]:
    """Fit the MLP to the rule (full-batch Adam on mean squared error, float64);
    returns it in float32 and the final RMS error on fresh states."""
    rng = np.random.default_rng(seed)
    x, y = sample_states(design, N_SAMPLES, rng)
    lows = np.array([p.minimum for p in design.contract.inputs])
    highs = np.array([p.maximum for p in design.contract.inputs])
    centre, inv_half = (lows + highs) / 2.0, 2.0 / (highs - lows)
    z = (x - centre) * inv_half
    n_in, n_out = x.shape[1], y.shape[1]
    params = [
        rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, HIDDEN)),
        np.zeros(HIDDEN),
        rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), (HIDDEN, n_out)),
        np.zeros(n_out),
    ]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, N_STEPS + 1):
        w1, b1, w2, b2 = params
        h = np.tanh(z @ w1 + b1)
        out = 1.0 / (1.0 + np.exp(-(h @ w2 + b2)))
        # d(mean squared error)/d(pre-sigmoid), then back through the layers.
        d_y = 2.0 * (out - y) / y.size * out * (1.0 - out)
        d_h = (d_y @ w2.T) * (1.0 - h * h)
        grads = [z.T @ d_h, d_h.sum(0), h.T @ d_y, d_y.sum(0)]
        for k, g in enumerate(grads):
            moments[k] = beta1 * moments[k] + (1 - beta1) * g
            squares[k] = beta2 * squares[k] + (1 - beta2) * g * g
            m_hat = moments[k] / (1 - beta1**step)
            v_hat = squares[k] / (1 - beta2**step)
            params[k] = params[k] - LEARNING_RATE * m_hat / (np.sqrt(v_hat) + eps)
    f32 = np.float32
    mlp = Mlp(
        centre.astype(f32),
        inv_half.astype(f32),
        *(p.astype(f32) for p in params),
    )
    x_test, y_test = sample_states(design, 4000, rng)
    rms = float(np.sqrt(np.mean((forward(mlp, x_test) - y_test) ** 2)))
    return mlp, rms


def build_onnx(mlp: Mlp, contract: ModelContract) -> bytes:
    """The ONNX file for a fitted network, with the contract in its metadata."""
    from onnx import TensorProto, helper, numpy_helper

    def constant(name: str, array: np.ndarray):
        return numpy_helper.from_array(np.ascontiguousarray(array), name)

    n_in, n_out = len(contract.inputs), len(contract.outputs)
    nodes = [
        helper.make_node("Sub", ["state", "centre"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "inv_half"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w1"], ["h_in"]),
        helper.make_node("Add", ["h_in", "b1"], ["h_pre"]),
        helper.make_node("Tanh", ["h_pre"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "w2"], ["y_in"]),
        helper.make_node("Add", ["y_in", "b2"], ["y_pre"]),
        helper.make_node("Sigmoid", ["y_pre"], [contract.output_tensor]),
    ]
    graph = helper.make_graph(
        nodes,
        f"soundscape_{contract.name}",
        [
            helper.make_tensor_value_info(
                contract.input_tensor, TensorProto.FLOAT, ["batch", n_in]
            )
        ],
        [
            helper.make_tensor_value_info(
                contract.output_tensor, TensorProto.FLOAT, ["batch", n_out]
            )
        ],
        initializer=[
            constant("centre", mlp.centre),
            constant("inv_half", mlp.inv_half),
            constant("w1", mlp.w1),
            constant("b1", mlp.b1),
            constant("w2", mlp.w2),
            constant("b2", mlp.b2),
        ],
    )
    model = helper.make_model(
        graph,
        producer_name="soundscape-engine training",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    model.doc_string = contract.description
    helper.set_model_props(model, {CONTRACT_KEY: contract.to_json()})
    return model.SerializeToString(deterministic=True)


def mlp_from_onnx(path: str | Path) -> Mlp:
    """The network arrays back from an exported file (for tests and checks)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return Mlp(**{k: arrays[k] for k in ("centre", "inv_half", "w1", "b1", "w2", "b2")})


def main(argv: list[str] | None = None) -> int:
    """Train and write the shipped models; prints each one's fit."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.model.training", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(MODELS):
        design = MODELS[name]
        mlp, rms = train(design, args.seed)
        data = build_onnx(mlp, design.contract)
        path = args.out / f"{name}.onnx"
        path.write_bytes(data)
        print(f"{path}: {len(data)} bytes, RMS error against its rule {rms:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
