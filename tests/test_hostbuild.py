"""Host builds of shipped C++ sources: cached by content, clear errors."""

from __future__ import annotations

import pytest

from gpucops.solver import hostbuild


def test_build_is_cached_by_source_content(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "answer.cpp"
    source.write_text('extern "C" int answer() { return 42; }\n')
    first = hostbuild.build_library(source)
    assert first.parent == tmp_path / "cache" and first.exists()
    assert hostbuild.build_library(source) == first
    source.write_text('extern "C" int answer() { return 43; }\n')
    second = hostbuild.build_library(source)
    assert second != first and second.exists()
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary files left behind


def test_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(RuntimeError, match="no-such-compiler-xyz"):
        hostbuild.build_library(tmp_path / "x.cpp")


def test_compile_error_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "broken.cpp"
    source.write_text("this is not C++\n")
    with pytest.raises(RuntimeError, match=r"broken\.cpp"):
        hostbuild.build_library(source)
    assert not list((tmp_path / "cache").iterdir())
