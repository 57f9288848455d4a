"""The kernel table: opcode -> address of that node's compiled kernel, and the
indirect call the interpreter makes through it.

Each kernel is compiled once, as its own function, for the one kernel
signature (``KERNEL_ARGS``). The interpreter does not link the kernels in: it
reads the kernel's address from a process-wide int64 table and calls it.
Measured against the former ``if op == ...`` chain that linked all 38 kernels
into the interpreter (benchmarks/RESULTS.md): LLVM optimised and emitted every
kernel again for each entry point that reached the interpreter (interpreter,
block renderer, callback), about half of the cold compile; here each kernel is
optimised and emitted once, and every entry point's own code is small. The
call costs a few nanoseconds per node per segment; each kernel keeps its own
register allocation instead of sharing one giant function's.

The table is exported to LLVM's JIT linker as the symbol ``soundscape_kernel_table``
(as ``engine.rt.clock`` does for ``clock_gettime``), so machine code loaded from
Numba's cache finds this process's table. It is filled by :func:`install_kernels`
before anything renders.

Audio thread: ``kernel_address`` and ``call_kernel`` yes (jitted code only, no
allocation, no GIL); the rest no (control thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

KERNEL_TABLE_SIZE = 128  # opcodes are below this (engine.dsp.opcodes)
_SYMBOL = "soundscape_kernel_table"
# Owned here for the life of the process: compiled code holds its address.
_TABLE = np.zeros(KERNEL_TABLE_SIZE, dtype=np.int64)
llvm_binding.add_symbol(_SYMBOL, _TABLE.ctypes.data)

_F64_2D = types.Array(types.float64, 2, "C")
_F64_1D = types.Array(types.float64, 1, "C")
_I64_1D = types.Array(types.int64, 1, "C")
# kernel(bufs, row, p0, p1, state, sample_rate, n_frames): see engine.dsp.nodes.
KERNEL_ARGS = (_F64_2D, _I64_1D, _F64_1D, _F64_1D, _F64_1D, types.float64, types.int64)


_requested: set[int] = set()
_loader: Callable[[Iterable[int]], None] | None = None


def request_kernels(opcodes: Iterable[int]) -> None:
    """Ask for these opcodes' kernels to be in the table before their program
    plays (the graph compiler calls this). Until the interpreter is imported
    the request is only noted, so compiling a graph to validate it (a scene
    check) loads and compiles no kernel. Control thread only."""
    if _loader is None:
        _requested.update(int(op) for op in opcodes)
    else:
        _loader(opcodes)


def set_kernel_loader(loader: Callable[[Iterable[int]], None]) -> None:
    """Install the function that loads kernels (the interpreter's), and run it
    for what was requested before."""
    global _loader
    _loader = loader
    loader(sorted(_requested))
    _requested.clear()


def install_kernels(kernels: Mapping[int, object]) -> None:
    """Compile (or load from cache) each kernel and write its address.

    ``kernels`` maps an opcode to a Numba dispatcher taking ``KERNEL_ARGS``.
    Raises ``TypeError`` for a kernel that does not compile to that signature
    or returns a value, ``ValueError`` for an opcode outside the table.
    """
    for op, kernel in kernels.items():
        if not 0 < int(op) < KERNEL_TABLE_SIZE:
            raise ValueError(f"opcode {int(op)} is outside 1..{KERNEL_TABLE_SIZE - 1}")
        _TABLE[int(op)] = kernel_entry(kernel)


def kernel_entry(kernel: object) -> int:
    """Address of ``kernel``'s native function for ``KERNEL_ARGS`` (compiled or
    loaded from the cache now if it is not yet)."""
    kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
    result = kernel.overloads[KERNEL_ARGS]  # type: ignore[attr-defined]
    name = getattr(kernel, "__name__", repr(kernel))
    if result.signature.return_type != types.none:
        raise TypeError(
            f"kernel {name} returns {result.signature.return_type}; kernels "
            "write their output into bufs and return nothing"
        )
    return int(result.library.get_pointer_to_function(result.fndesc.llvm_func_name))


def installed_kernels() -> dict[int, int]:
    """Opcode -> address of every kernel in the table (control thread)."""
    return {op: int(a) for op, a in enumerate(_TABLE) if a}


@intrinsic
def kernel_address(typingctx, op):  # type: ignore[no-untyped-def]
    """The kernel address for opcode ``op``; 0 when it has none or is out of
    range (jitted code only)."""
    if not isinstance(op, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        table_type = ir.ArrayType(i64, KERNEL_TABLE_SIZE)
        table = builder.module.globals.get(_SYMBOL)
        if table is None:
            table = ir.GlobalVariable(builder.module, table_type, _SYMBOL)
            table.linkage = "external"
        index = context.cast(builder, args[0], signature.args[0], types.int64)
        result = builder.alloca(i64)
        builder.store(ir.Constant(i64, 0), result)
        in_range = builder.icmp_unsigned(
            "<", index, ir.Constant(i64, KERNEL_TABLE_SIZE)
        )
        with builder.if_then(in_range):
            slot = builder.gep(table, [ir.Constant(i64, 0), index], inbounds=True)
            builder.store(builder.load(slot), result)
        return builder.load(result)

    return types.int64(op), codegen


@intrinsic
def call_kernel(typingctx, address, bufs, row, p0, p1, state, sample_rate, n_frames):  # type: ignore[no-untyped-def]
    """Call the kernel at ``address`` with the kernel arguments (jitted code
    only). The arguments must type exactly as ``KERNEL_ARGS``."""
    given = (bufs, row, p0, p1, state, sample_rate, n_frames)
    if not isinstance(address, types.Integer) or given != KERNEL_ARGS:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = context.call_conv.get_function_type(types.none, KERNEL_ARGS)
        target = context.cast(builder, args[0], signature.args[0], types.int64)
        function = builder.inttoptr(target, fnty.as_pointer())
        # Kernels never raise (error_model="numpy", no raise statements; the
        # IR scan checks it), so the status is not looked at.
        context.call_conv.call_function(
            builder, function, types.none, KERNEL_ARGS, args[1:]
        )
        return context.get_dummy_value()

    return types.void(address, *given), codegen
