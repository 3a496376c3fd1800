"""Test setup: start the provider emulator (built by `cargo build -p gaterouter-emulator`) and,
for the usage-record tests, the collector (`cargo build -p gaterouter-collector`)."""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import time
import urllib.request
from typing import Any, Dict, Iterator, List

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


def _collector_bin() -> str:
    env = os.environ.get("GATEROUTER_COLLECTOR_BIN")
    if env:
        return env
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / "gaterouter-collector"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "gaterouter-collector"], cwd=ROOT, check=True)
    return str(path)


class Collector:
    """The real collector binary on a temporary SQLite file, with org ``acme`` and API key
    ``k_py`` (the public key of the shared record vectors' seed) created through the admin
    API. Records are read back straight from the SQLite file."""

    ADMIN = "py-test-admin-token-0123456789"

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.db = workdir / "collector.db"
        self.log = workdir / "collector.log"
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [_collector_bin(), "--listen", "127.0.0.1:0", "--db", f"sqlite://{self.db}", "--log-format", "json"],
            env={**os.environ, "GATEROUTER_COLLECTOR_ADMIN_TOKEN": self.ADMIN},
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self.base_url = self._wait_listening()
        vectors = json.loads((VECTORS / "records.json").read_text(encoding="utf-8"))
        self.key_file = workdir / "signing.key"
        self.key_file.write_text(vectors["seed_base64"])
        self.admin("/v1/admin/orgs", {"id": "acme", "name": "Acme"})
        # Records naming a member must name a registered one (the collector checks the tree).
        self.admin("/v1/admin/users", {"id": "py-user", "org_id": "acme"})
        self.admin("/v1/admin/keys", {"id": "k_py", "org_id": "acme", "public_key": vectors["public_key"]})
        self._spools = 0

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if '"collector listening"' in line:
                    return "http://" + json.loads(line)["fields"]["addr"]
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited: {self.log.read_text()}")
            time.sleep(0.02)
        raise RuntimeError(f"collector did not start: {self.log.read_text()}")

    def admin(self, path: str, body: Dict[str, Any], method: str = "POST") -> Any:
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {self.ADMIN}"},
            method=method,
        )
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    def get(self, path: str) -> Any:
        """``GET path`` with the admin token (analytics reports)."""
        req = urllib.request.Request(self.base_url + path, headers={"authorization": f"Bearer {self.ADMIN}"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def config(self, emulator: "Emulator", **overrides: Any) -> Dict[str, Any]:
        """Emulator providers plus reporting to this collector, with a spool of its own
        (one spool directory per client)."""
        self._spools += 1
        reporting = {
            "collector_url": self.base_url,
            "spool_dir": str(self.workdir / f"spool-{self._spools}"),
            "signing_key_file": str(self.key_file),
            "batch_max_age_ms": 20,
            "fsync_interval_ms": 50,
            "retry_initial_backoff_ms": 20,
            "retry_max_backoff_ms": 200,
        }
        reporting.update(overrides.pop("reporting", {}))
        return emulator.config(identity={"org": "acme", "user": "py-user", "api_key_id": "k_py"}, reporting=reporting, **overrides)

    def records(self, run: str) -> List[Dict[str, Any]]:
        """Stored records tagged ``run=<run>``, each with its tags as a dict."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            con.row_factory = sqlite3.Row
            rows = con.execute(
                "SELECT r.* FROM usage_records r JOIN usage_tags t ON t.org = r.org AND t.record_id = r.id WHERE t.k = 'run' AND t.v = ?",
                (run,),
            ).fetchall()
            out = []
            for row in rows:
                rec = dict(row)
                rec["tag"] = dict(con.execute("SELECT k, v FROM usage_tags WHERE org = ? AND record_id = ?", (rec["org"], rec["id"])).fetchall())
                out.append(rec)
            return out
        finally:
            con.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log_file.close()


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = Collector(tmp_path_factory.mktemp("collector"))
    yield c
    c.stop()
