"""Host builds of shipped C++ sources: cached by content, clear errors."""

from __future__ import annotations

import ctypes
import os

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
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    source = tmp_path / "x.cpp"
    source.write_text('extern "C" int x() { return 1; }\n')
    with pytest.raises(RuntimeError, match="no-such-compiler-xyz"):
        hostbuild.build_library(source)


def test_compile_error_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "broken.cpp"
    source.write_text("this is not C++\n")
    with pytest.raises(RuntimeError, match=r"broken\.cpp"):
        hostbuild.build_library(source)
    assert not list((tmp_path / "cache").iterdir())


ANSWER = 'extern "C" int answer() { return 42; }\n'


def _answer_library(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "answer.cpp"
    source.write_text(ANSWER)
    return source, hostbuild.build_library(source, symbols=("answer",))


def _damage(library, content: bytes) -> None:
    """Put ``content`` in the library's place as another process would (a new file: this
    process has the built library mapped, and writing into that file would crash it)."""
    damaged = library.with_name("damaged.tmp")
    damaged.write_bytes(content)
    os.replace(damaged, library)


@pytest.mark.parametrize("damage", ["truncate", "empty", "replace", "no record"])
def test_a_damaged_cached_library_is_rebuilt_not_loaded(damage, tmp_path, monkeypatch):
    source, library = _answer_library(tmp_path, monkeypatch)
    good = library.read_bytes()
    if damage == "truncate":  # loading this killed every later solve with a bus error
        _damage(library, good[: len(good) // 3])
    elif damage == "empty":
        _damage(library, b"")
    elif damage == "replace":  # same size, other bytes
        _damage(library, bytes(len(good)))
    else:
        library.with_suffix(".json").unlink()
    again = hostbuild.build_library(source, symbols=("answer",))
    assert again == library and again.read_bytes() == good
    assert ctypes.CDLL(str(again)).answer() == 42


@pytest.mark.parametrize("cxx", ["/bin/true", "gcc"])
def test_a_build_without_a_usable_library_is_an_error_and_is_not_cached(cxx, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    # /bin/true "succeeds" and writes nothing; gcc compiles the C++ but does not link libstdc++,
    # so the library does not load
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", cxx)
    source = tmp_path / "cpp_only.cpp"
    source.write_text(
        '#include <vector>\nextern "C" int size() { return std::vector<int>(3).size(); }\n'
    )
    with pytest.raises(RuntimeError, match=r"cpp_only\.cpp"):
        hostbuild.build_library(source, symbols=("size",))
    assert not list((tmp_path / "cache").glob("*.so"))


def test_a_verified_library_serves_without_a_compiler(tmp_path, monkeypatch):
    source, library = _answer_library(tmp_path, monkeypatch)
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert hostbuild.build_library(source, symbols=("answer",)) == library
    _damage(library, b"")  # and without one, a damaged library is an error naming it
    with pytest.raises(RuntimeError, match="no-such-compiler-xyz"):
        hostbuild.build_library(source, symbols=("answer",))
