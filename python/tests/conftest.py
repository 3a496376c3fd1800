"""Test setup: start the provider emulator (built by `cargo build -p gaterouter-emulator`)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import urllib.request
from typing import Any, Dict, Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _emulator_bin() -> str:
    env = os.environ.get("GATEROUTER_EMULATOR_BIN")
    if env:
        return env
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / "gaterouter-emulator"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "gaterouter-emulator"], cwd=ROOT, check=True)
    return str(path)


class Emulator:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [_emulator_bin(), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), f"unexpected emulator banner: {line!r}"
        self.base_url = line.split(" ", 2)[2]

    def config(self, **overrides: Any) -> Dict[str, Any]:
        providers = {
            name: {"kind": kind, "base_url": self.base_url + path, "api_key": "emulator-key"}
            for name, kind, path in [
                ("openai", "openai", "/openai/v1"),
                ("anthropic", "anthropic", "/anthropic"),
                ("gemini", "gemini", "/gemini/v1beta"),
                ("deepseek", "openai", "/deepseek/v1"),
            ]
        }
        cfg: Dict[str, Any] = {"providers": providers, "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 50}}
        cfg.update(overrides)
        return cfg

    def fault(self, **spec: Any) -> None:
        req = urllib.request.Request(
            self.base_url + "/_emulator/faults",
            data=json.dumps(spec).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req) as r:
            assert r.status < 300

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator()
    yield emu
    emu.stop()
