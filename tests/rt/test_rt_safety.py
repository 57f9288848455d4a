"""Static real-time safety: nothing the audio callback can reach (the renderer,
and every kernel in the kernel table) allocates, takes the GIL, calls the Python
C API, or can raise.

The LLVM IR is read from a fresh compile (a private, empty Numba cache): Numba does
not keep IR for functions loaded from its cache.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

SCAN = textwrap.dedent(
    r"""
    import json, re, sys
    from engine.rt.callback import audio_callback
    from engine.dsp.dispatch import KERNEL_ARGS
    from engine.dsp.interpreter import KERNELS
    from engine.dsp.interpreter import render_program
    from engine.rt.core import render_block
    # The callback reaches the kernels through the kernel table, so each
    # kernel's own module is scanned beside the callback's; so are the
    # renderer's (LLVM may have inlined them into the callback).
    modules = [audio_callback.inspect_llvm()]
    for function in (render_block, render_program):
        modules += [function.inspect_llvm(sig) for sig in function.signatures]
    modules += [kernel.inspect_llvm(KERNEL_ARGS) for kernel in KERNELS.values()]
    ir = "\n".join(modules)
    forbidden = re.compile(
        r"call [^\n]*@\"?(NRT_Allocate\w*|NRT_MemInfo_alloc\w*|NRT_MemInfo_new\w*"
        r"|numba_gil_ensure|PyGILState_\w+|Py[A-Z]\w*|_Py\w+)"
    )
    # A function that can originate an exception references a pickled one.
    raises = re.compile(r"picklebuf|pickledata")
    report = {"functions": 0, "bad": {}}
    for body in re.split(r"\ndefine ", ir)[1:]:
        name = re.search(r'@"?([\w.$]+)', body).group(1)
        # A dispatcher's CPython wrapper is how Python calls it; the audio
        # thread calls the native function (through the kernel table).
        if name.startswith("_ZN7cpython"):
            continue
        report["functions"] += 1
        found = sorted(set(m.group(1) for m in forbidden.finditer(body)))
        if raises.search(body):
            found.append("can raise")
        # Numba's cfunc wrapper reports errors from the function it wraps under
        # the GIL; that path is dead when nothing inside can raise (checked on
        # every other function here).
        if name.startswith("cfunc.") and found and "can raise" not in found:
            continue
        if found:
            report["bad"][name[:90]] = found
    names = " ".join(re.findall(r"\ndefine [^@]*@\"?([\w.$]+)", ir))
    report["has_renderer"] = "render_block" in names and "render_program" in names
    report["kernels"] = sum(
        kernel.__name__ in names for kernel in set(KERNELS.values())
    )
    report["n_kernels"] = len(set(KERNELS.values()))
    json.dump(report, sys.stdout)
    """
)


def test_callback_and_renderer_ir_has_no_allocation_gil_python_or_raise(
    tmp_path: Path, run_python
) -> None:
    env = {
        "NUMBA_CACHE_DIR": str(tmp_path),
        # One process compiles all, so all the IR is in the scanning process.
        "SOUNDSCAPE_COMPILE_PROCESSES": "1",
    }
    report = json.loads(run_python(SCAN, env=env, timeout_s=600))
    assert report["has_renderer"], "the scan did not see the renderer"
    assert report["functions"] > 20
    assert report["kernels"] == report["n_kernels"] > 20
    assert report["bad"] == {}


def test_the_scan_catches_allocation_and_raise(tmp_path: Path, run_python) -> None:  # type: ignore[no-untyped-def]
    """The scan's patterns really match what an unsafe kernel compiles to."""
    probe = textwrap.dedent(
        r"""
        import re, numpy as np
        from numba import njit
        @njit(nogil=True)
        def unsafe(a):
            if a[0] > 1.0:
                raise ValueError("bad")
            return np.zeros(a.shape[0])
        unsafe(np.zeros(3))
        ir = next(iter(unsafe.inspect_llvm().values()))
        print(bool(re.search(r"NRT_MemInfo_alloc", ir)), bool(re.search("picklebuf", ir)))
        """
    )
    out = run_python(probe, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert out.split() == ["True", "True"]
