"""A compiled program: the flat arrays the interpreter runs, plus the names that
let the control plane find a parameter.

Audio thread: no (the arrays are read by the audio thread; this class is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.dsp.layout import (
    I_IN,
    I_N_PARAM,
    I_N_STATE,
    I_OP,
    I_OUT,
    I_OUT_WIDTH,
    I_PARAM,
    I_STATE,
    I_VOICES,
    INFO_GENERATION,
    INFO_IN_SLOT,
    INFO_N_INSTR,
    INFO_OUT_SLOT,
    INFO_OUT_STRIDE,
    MAX_INPUTS,
    P_TARGET,
)
from engine.dsp.opcodes import Op


@dataclass(frozen=True)
class ParamRef:
    """Where one node parameter lives: columns ``column .. column + voices``."""

    node: str
    param: str
    column: int
    voices: int
    minimum: float
    maximum: float
    choices: tuple[str, ...] = ()


@dataclass
class Program:
    """Flat arrays of a compiled graph (see ``engine.dsp.layout``)."""

    instr: np.ndarray
    params: np.ndarray
    state: np.ndarray
    bufs: np.ndarray
    info: np.ndarray
    sample_rate: int
    max_block_size: int
    seed: int
    node_names: list[str]
    node_types: list[str]
    param_refs: dict[tuple[str, str], ParamRef] = field(default_factory=dict)
    initial_state: np.ndarray | None = None

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """The tuple the interpreter takes: (instr, params, state, bufs, info)."""
        return (self.instr, self.params, self.state, self.bufs, self.info)

    @property
    def generation(self) -> int:
        return int(self.info[INFO_GENERATION])

    @property
    def n_instr(self) -> int:
        return int(self.info[INFO_N_INSTR])

    def param(self, node: str, param: str) -> ParamRef:
        """Look up a parameter by node name and parameter name."""
        try:
            return self.param_refs[(node, param)]
        except KeyError:
            known = sorted({n for n, _ in self.param_refs})
            raise KeyError(
                f"no parameter {param!r} on node {node!r}; nodes with parameters: "
                f"{', '.join(known)}"
            ) from None

    def set_target(self, node: str, param: str, value: float | str) -> None:
        """Write a parameter target for every voice (control thread).

        The audio thread smooths towards it. Values are validated here; the audio
        thread also rejects non-finite values as a last line of defence.
        """
        ref = self.param(node, param)
        if isinstance(value, str):
            if value not in ref.choices:
                raise ValueError(f"{node}.{param}: {value!r} not in {ref.choices}")
            number = float(ref.choices.index(value))
        else:
            number = float(value)
            if not np.isfinite(number):
                raise ValueError(f"{node}.{param}: {value!r} is not finite")
            number = min(max(number, ref.minimum), ref.maximum)
        self.params[P_TARGET, ref.column : ref.column + ref.voices] = number

    def reset(self) -> None:
        """Clear state back to its initial values, keep parameters."""
        if self.initial_state is not None:
            self.state[:] = self.initial_state
        self.bufs[:] = 0.0

    def dump(self) -> str:
        """A readable listing of the instruction table, for golden tests."""
        header = (
            f"program: {self.n_instr} nodes, {self.bufs.shape[0]} slots, "
            f"{self.params.shape[1]} params, {self.state.shape[0]} state"
        )
        lines = [header]
        for i in range(self.n_instr):
            row = self.instr[i]
            ins = []
            for k in range(MAX_INPUTS):
                slot, stride = row[I_IN + 2 * k], row[I_IN + 2 * k + 1]
                if slot:
                    ins.append(f"{slot}{'' if stride else '*'}")
            lines.append(
                f"{i:3d} {Op(int(row[I_OP])).name.lower():<16} "
                f"{self.node_names[i]:<14} v={row[I_VOICES]} "
                f"out={row[I_OUT]}+{row[I_OUT_WIDTH]} in=[{' '.join(ins)}] "
                f"p={row[I_PARAM]}+{row[I_N_PARAM]} s={row[I_STATE]}+{row[I_N_STATE]}"
            )
        lines.append(
            f"out={self.info[INFO_OUT_SLOT]} stride={self.info[INFO_OUT_STRIDE]} "
            f"in={self.info[INFO_IN_SLOT]}"
        )
        return "\n".join(lines)
