"""Field indices of the flat arrays a compiled program is made of.

A program (see ``engine.graph.program``) is five arrays:

- ``instr``  int64 ``[n_instr, INSTR_WIDTH]``: one row per node, fields ``I_*``;
- ``params`` float64 ``[N_PARAM_FIELDS, n_params]``: one column per parameter
  value, fields ``P_*`` (the control plane writes only ``P_TARGET``);
- ``state``  float64 ``[n_state]``: every node's state, one slice each;
- ``bufs``   float64 ``[n_slots, max_block_size + pad]``: signal buffers (rows
  padded against cache-set aliasing; kernels use the first n_frames); slot 0 is
  always zeros and feeds unconnected inputs;
- ``info``   int64 ``[INFO_WIDTH]``: program-wide facts, fields ``INFO_*``.

A node with ``V`` voices owns ``V`` consecutive buffer slots for its output and
``V`` parameter columns per declared parameter: parameter ``j`` of voice ``v`` is
column ``param_offset + j * V + v``. Input ``k`` is read from slot
``row[I_IN + 2k] + v * row[I_IN + 2k + 1]``; the second number (the stride) is 0
when a one-channel signal feeds every voice.

Audio thread: yes (constants only).
"""

# Instruction row fields.
I_OP = 0  # opcode, see engine.dsp.opcodes
I_VOICES = 1  # number of voices (channels) the node runs
I_PARAM = 2  # first parameter column
I_N_PARAM = 3  # number of parameter columns (n_declared * voices)
I_STATE = 4  # first state element
I_N_STATE = 5  # number of state elements
I_OUT = 6  # first output slot
I_OUT_WIDTH = 7  # number of output slots
I_IN = 8  # inputs: (slot, stride) pairs from here on
MAX_INPUTS = 4
INSTR_WIDTH = I_IN + 2 * MAX_INPUTS

# Parameter fields (rows of the params array).
P_TARGET = 0  # written by the control plane; may hold anything, even NaN
P_GOOD = 1  # last finite, clamped target the audio thread accepted
P_START = 2  # smoothed value at the start of the current segment
P_CURRENT = 3  # smoothed value at the end of the current segment
P_TAU = 4  # one-pole smoothing time constant in samples; 0 jumps at once
P_MIN = 5
P_MAX = 6
# Linear slew in units per sample; when above 0 it replaces the one-pole, so the
# value moves in a straight line and lands exactly (timed ramps, slew contracts).
P_SLEW = 7
P_SLEW_BASE = 8  # the parameter's own slew contract, restored when a ramp lands
N_PARAM_FIELDS = 9

# Program info fields.
INFO_N_INSTR = 0
INFO_OUT_SLOT = 1  # first output slot
INFO_OUT_STRIDE = 2  # 0 when a mono signal feeds both channels
INFO_IN_SLOT = 3  # first slot of the program's external input (-1 if none)
INFO_GENERATION = 4  # id that timed events name to reach this program
INFO_N_PARAMS = 5
INFO_WIDTH = 8

# Slot that is always zero; unconnected inputs read it.
ZERO_SLOT = 0
