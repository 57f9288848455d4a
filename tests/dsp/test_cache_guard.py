"""Numba's cache is dropped when any jitted source changes, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.dsp import cache_guard


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for pkg in ("dsp", "rt"):
        (tmp_path / pkg / "__pycache__").mkdir(parents=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "dsp" / "kernels_osc.py").write_text("x = 1\n")
    (tmp_path / "rt" / "core.py").write_text("y = 2\n")
    monkeypatch.setattr(cache_guard, "_PACKAGE_ROOT", tmp_path)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr("numba.core.config.CACHE_DIR", "")
    return tmp_path


def _cache_files(package: Path) -> list[Path]:
    for name in (
        "dsp/__pycache__/kernels_osc.sine-9.py311.nbi",
        "rt/__pycache__/core.render_block-40.py311.1.nbc",
    ):
        (package / name).write_bytes(b"compiled")
    return [
        package / "dsp/__pycache__/kernels_osc.sine-9.py311.nbi",
        package / "rt/__pycache__/core.render_block-40.py311.1.nbc",
    ]


def test_cache_is_dropped_when_a_source_changes(package: Path) -> None:
    files = _cache_files(package)
    foreign = package / "dsp/__pycache__/not_ours.f-1.py311.nbi"
    foreign.write_bytes(b"someone else's")
    assert cache_guard.invalidate_stale_cache()  # no stamp yet: unknown sources
    assert not any(f.exists() for f in files)
    assert foreign.exists()

    files = _cache_files(package)
    assert not cache_guard.invalidate_stale_cache()  # same sources: kept
    assert all(f.exists() for f in files)

    (package / "rt" / "core.py").write_text("y = 3\n")  # a kernel edit
    assert cache_guard.invalidate_stale_cache()
    assert not any(f.exists() for f in files)
