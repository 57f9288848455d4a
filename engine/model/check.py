"""``soundscape model check MODEL.onnx [--scene S]``: what a model reads and
writes, and, against a scene, what matches, what is missing and what is out
of range.

    lines, problems = check_model("my.onnx", "scenes/focus.yaml")
    print("\\n".join(lines))      # one finding per line

A *problem* (counted, and the command exits 1) is something that cannot work:
a model that does not load, a scene binding an output the model lacks, a
direct binding whose output range leaves the parameter's range. A *note* is
something to know: a model input with no source in the scene (it reads its
default), a scene input whose range reaches past the model's (clamped), an
output nobody binds.

Threads: the CLI's (a control thread); never the audio thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.model.contract import ContractError, ModelContract
from engine.model.runtime import check_session, open_session
from engine.naming import did_you_mean

__all__ = ["check_model"]


def _load(path: Path) -> ModelContract:
    from engine.model.contract import contract_from_metadata

    session = open_session(path)
    contract = contract_from_metadata(
        dict(session.get_modelmeta().custom_metadata_map), str(path)
    )
    check_session(session, contract, path)
    return contract


def _scene_findings(
    contract: ModelContract, scene: dict[str, Any], scene_file: str
) -> tuple[list[str], int]:
    from engine.model.control_loop import CLOCK_PREFIX
    from engine.scenes.format import CLOCK_SOURCES

    lines = [f"against {scene_file}:"]
    problems = 0
    model = scene.get("model") or {"inputs": {}, "bindings": {}}
    inputs = scene["inputs"]
    for port in contract.inputs:
        source = model["inputs"].get(port.name)
        if source is None and port.name in inputs:
            source = port.name
        if source is None and port.name in CLOCK_SOURCES:
            source = f"{CLOCK_PREFIX}{port.name}"
        if source is None:
            lines.append(
                f"  note: input {port.name}: no scene input or clock source; it "
                f"reads its default {port.default:g}{did_you_mean(port.name, inputs)}"
            )
        elif source.startswith(CLOCK_PREFIX):
            lines.append(f"  ok: input {port.name} <- {source}")
        else:
            spec = inputs[source]
            low, high = spec["minimum"], spec["maximum"]
            if low < port.minimum or high > port.maximum:
                lines.append(
                    f"  note: input {port.name} <- scene input {source} "
                    f"({low:g}..{high:g}) reaches outside the model's range "
                    f"{port.minimum:g}..{port.maximum:g}: clamped there"
                )
            else:
                lines.append(
                    f"  ok: input {port.name} <- scene input {source} "
                    f"({low:g}..{high:g})"
                )
    bound = model["bindings"]
    for output, items in bound.items():
        if output not in contract.output_names:
            problems += 1
            lines.append(
                f"  problem: the scene binds output {output!r}, the model has "
                f"none{did_you_mean(output, contract.output_names)} (outputs: "
                f"{', '.join(contract.output_names)})"
            )
            continue
        port = contract.output(output)
        for b in items:
            unit = f" {port.unit}" if port.unit else ""
            if "range" in b:
                low, high = b["range"]
                kind = "dB offset" if b["level"] else b["curve"]
                lines.append(
                    f"  ok: output {output} ({port.minimum:g}..{port.maximum:g}"
                    f"{unit}) -> {b['to']}: {low:g}..{high:g} ({kind})"
                )
            elif port.minimum < b["minimum"] or port.maximum > b["maximum"]:
                problems += 1
                lines.append(
                    f"  problem: output {output} ({port.minimum:g}.."
                    f"{port.maximum:g}{unit}) -> {b['to']}, whose range is "
                    f"{b['minimum']:g}..{b['maximum']:g}: out of range (give the "
                    "binding a range)"
                )
            else:
                lines.append(f"  ok: output {output} -> {b['to']} (as it is)")
    for port in contract.outputs:
        if port.name not in bound:
            lines.append(f"  note: output {port.name} is not bound (unused)")
    return lines, problems


def check_model(
    path: str | Path, scene: str | Path | None = None
) -> tuple[list[str], int]:
    """The findings about a model (and a scene that uses it), one per line,
    and the number of problems among them."""
    path = Path(path)
    try:
        contract = _load(path)
    except ContractError as error:
        return [f"problem: {error}"], 1
    lines = [
        f"{path}: {contract.name} {contract.version}: {contract.description}",
        "inputs:",
        *(f"  {p.describe()}" for p in contract.inputs),
        "outputs:",
        *(f"  {p.describe()}" for p in contract.outputs),
    ]
    if scene is None:
        return lines, 0
    from engine.scenes.format import load_scene_file
    from engine.scenes.library import find_scene

    scene_path = find_scene(scene)
    if scene_path is None:
        raise ValueError(f"unknown scene {str(scene)!r}")
    loaded, _graph = load_scene_file(scene_path)
    more, problems = _scene_findings(contract, loaded, str(scene_path))
    return lines + more, problems
