"""The package's type stubs hold up under ``mypy --strict`` (package and a typed example)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def test_mypy_strict_on_a_typed_example_and_the_package() -> None:
    pytest.importorskip("mypy")
    example = HERE.parent / "examples" / "typed_example.py"
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(example)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # A misuse must be caught (the check is not vacuous).
    bad = HERE / "_bad_typed_example.py"
    bad.write_text("import gaterouter\nn: str = gaterouter.Client().chat.completions.create(model='x', messages=[]).usage.prompt_tokens\n")
    try:
        out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(bad)], capture_output=True, text=True)
        assert out.returncode != 0 and "incompatible types" in out.stdout.lower(), out.stdout
    finally:
        bad.unlink()
