"""Keep Numba's on-disk cache honest about the kernels the interpreter inlines.

Numba keys a cached function on its own source file only. The interpreter, the
block renderer and the audio callback are compiled together with every kernel
they call, so editing a kernel module would leave them running the old machine
code from cache. At import we hash every jitted source file; when the hash
differs from the one stamped beside the cache, the stale cache files are removed
and Numba compiles afresh (once).

Control thread only: runs once, at import.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# Directories whose modules hold @njit/@cfunc code compiled into one another.
_JITTED_PACKAGES = ("dsp", "rt")
_STAMP_NAME = "soundscape-kernels.sha256"
# Written once every kernel of these sources is in the cache (cold_compile).
_COMPILED_NAME = "soundscape-kernels.compiled"


def _jitted_sources() -> list[Path]:
    return sorted(
        p for pkg in _JITTED_PACKAGES for p in (_PACKAGE_ROOT / pkg).glob("*.py")
    )


def sources_digest() -> str:
    """SHA-256 over the names and contents of every jitted source file."""
    digest = hashlib.sha256()
    for path in _jitted_sources():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cache_dir(package_dir: Path) -> Path | None:
    """The directory Numba caches this package directory's functions in: the
    in-tree ``__pycache__``, or ``NUMBA_CACHE_DIR``'s mirror of it, asked of
    Numba's own locators so both agree."""
    from numba.core import caching

    py_file = str(package_dir / "__init__.py")
    for locator_class in caching.CacheImpl._locator_classes:
        locator = locator_class.from_function(_cache_dir, py_file)
        if locator is not None:
            return Path(locator.get_cache_path())
    return None


def invalidate_stale_cache() -> bool:
    """Delete Numba cache files compiled from other sources; True if any were.

    A cache directory that cannot be written (a read-only install) is left as
    it is: its sources cannot have changed under it either.
    """
    wanted = sources_digest()
    cache_dirs = {pkg: _cache_dir(_PACKAGE_ROOT / pkg) for pkg in _JITTED_PACKAGES}
    if cache_dirs["dsp"] is None:
        return False
    stamp = cache_dirs["dsp"] / _STAMP_NAME
    try:
        if stamp.read_text().strip() == wanted:
            return False
    except OSError:
        pass
    removed = False
    try:
        for pkg, cache_dir in cache_dirs.items():
            if cache_dir is None:
                continue
            stems = {p.stem for p in (_PACKAGE_ROOT / pkg).glob("*.py")}
            for path in cache_dir.glob("*.nb[ic]"):
                if path.name.split(".", 1)[0] in stems:
                    path.unlink(missing_ok=True)
                    removed = True
        stamp.write_text(wanted + "\n")
    except OSError:
        return removed
    return removed


def kernels_compiled() -> bool:
    """True when a process has put every kernel of the current sources in the
    cache (``mark_kernels_compiled``), so a start needs no compile."""
    cache_dir = _cache_dir(_PACKAGE_ROOT / "dsp")
    if cache_dir is None:
        return False
    try:
        return (cache_dir / _COMPILED_NAME).read_text().strip() == sources_digest()
    except OSError:
        return False


def mark_kernels_compiled() -> None:
    """Record that the cache holds every kernel of the current sources."""
    cache_dir = _cache_dir(_PACKAGE_ROOT / "dsp")
    if cache_dir is None:
        return
    try:
        (cache_dir / _COMPILED_NAME).write_text(sources_digest() + "\n")
    except OSError:
        pass  # a read-only install: every start checks the cache instead
