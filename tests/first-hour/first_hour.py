#!/usr/bin/env python3
"""First-hour tests: a new user's path, per language, end to end.

Usage: python3 tests/first-hour/first_hour.py [--no-build] [rust] [python] [node]   (default: all three;
Kotlin's twin is FirstHourTest in bindings/kotlin, run by bindings/kotlin/run-tests.sh)

For each language, in a fresh directory, exactly as the READMEs show:
1. a collector (SQLite, admin token) with `examples/org.toml` applied, after
   `gaterouter keys new` made the helpdesk bot's signing key and its public key was pasted
   into the file (README.md, "Set up your organization");
2. the SDK configured with README.md's minimal `gaterouter.toml` (the block marked
   `name=minimal-config`: `[identity] api_key_id`, `[reporting] signing_key_file` and
   `collector_url`; plus the emulator as provider, as the README shows);
3. a fresh project as that language's README says (Rust: a crate depending on
   `gaterouter`; Python: a new venv and `pip install ./python`; Node: `npm init` and
   `npm install ./node`), one call through the emulator, `flush`;
4. the record must show up in the collector's analytics under the key's department
   (`support`), with nothing refused.
Then the same project with a wrong `[identity] department` (the key is bound to
`support`, the file says `eng`) must fail loudly: a typed configuration error naming
`identity.department` (Rust ErrorKind::Config, Python ConfigError, Node err.code CONFIG),
not a call answered with its record refused later.

Prints one line per test and `N passed, N failed`; exits 1 on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# `npm install ./node` compiles the addon (node/scripts/install.js): debug profile, like
# the tests, so it shares their build instead of a second, release one.
os.environ.setdefault("GATEROUTER_NODE_PROFILE", "dev")
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "readme"))
import check  # noqa: E402  (the README checker: build(), BIN, REPO, servers)

REPO, BIN, TARGET = check.REPO, check.BIN, check.TARGET
ADMIN = check.ADMIN_TOKEN
DEPARTMENT = "support"  # k_helpdesk_bot's department in examples/org.toml
WRONG = 'department = "eng"'

RUST_MAIN = r'''
use std::time::Duration;
use gaterouter::{ChatRequest, Client, ErrorKind, Message};

#[tokio::main]
async fn main() {
    // As the README's Rust quickstart: the config file in the working directory.
    let client = match Client::from_toml_file("gaterouter.toml") {
        Ok(c) => c,
        Err(e) => { println!("ERROR kind={} {e}", e.kind()); std::process::exit(if e.kind() == ErrorKind::Config { 3 } else { 1 }) }
    };
    let req = ChatRequest::new("openai/gpt-4o-mini", vec![Message::user("Where is my parcel?")]);
    match client.chat(req).await {
        Ok(resp) => println!("answer: {}", resp.text()),
        Err(e) => { println!("ERROR kind={} {e}", e.kind()); std::process::exit(if e.kind() == ErrorKind::Config { 3 } else { 1 }) }
    }
    println!("flush: {:?}", client.flush(Duration::from_secs(10)).await);
}
'''

PY_MAIN = r'''
import sys
import gaterouter

try:
    client = gaterouter.Client(config_file="gaterouter.toml")   # as python/README.md
    resp = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Where is my parcel?"}]
    )
except gaterouter.ConfigError as e:
    print("ERROR kind=CONFIG", e)
    sys.exit(3)
print("answer:", resp.choices[0].message.content)
print("flush:", client.flush())
client.close()
'''

NODE_MAIN = r'''
import { GateRouter } from 'gaterouter'   // as node/README.md's quick start

let client
try {
  client = new GateRouter({ configFile: './gaterouter.toml' })
  const c = await client.chat.completions.create({
    model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Where is my parcel?' }],
  })
  console.log('answer:', c.choices[0].message.content)
} catch (err) {
  console.log(`ERROR kind=${err.code} ${err.message}`)
  process.exit(err.code === 'CONFIG' ? 3 : 1)
}
console.log('flush:', JSON.stringify(await client.flush()))
await client.close()
'''


def readme_block(name: str) -> str:
    for b in check.extract(REPO / "README.md"):
        if b.marker.get("name") == name:
            return b.code
    raise SystemExit(f"first-hour: README.md has no block marked name={name}")


class Org:
    """A collector with examples/org.toml applied and the helpdesk bot's key made."""

    def __init__(self, work: Path, emulator_port: int):
        self.work = work
        self.port = check.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**{k: v for k, v in os.environ.items() if k not in check.PROVIDER_KEY_VARS and not k.startswith("GATEROUTER_")},
                    "GATEROUTER_COLLECTOR_ADMIN_TOKEN": ADMIN, "GATEROUTER_ADMIN_TOKEN": ADMIN,
                    "GATEROUTER_COLLECTOR_URL": self.url, "CI": "true"}
        self.log = open(work / "collector.log", "w")
        self.proc = subprocess.Popen([str(BIN / "gaterouter-collector"), "--listen", f"127.0.0.1:{self.port}", "--db", f"sqlite://{work / 'acme.db'}"],
                                     env=self.env, stdout=self.log, stderr=self.log)
        if not check.wait_port(self.port, self.proc, 60):
            raise RuntimeError("collector did not start: " + (work / "collector.log").read_text())
        out = self.cli("keys", "new", "--out", "helpdesk.key")
        pub = re.search(r"public key.*: (\S+)", out).group(1)  # type: ignore[union-attr]
        org = (REPO / "examples" / "org.toml").read_text()
        org, n = re.subn(r'(id = "k_helpdesk_bot"(?:\n(?!\[).*)*?\npublic_key = )"[^"]*"', rf'\g<1>"{pub}"', org)
        assert n == 1, "k_helpdesk_bot's public_key not found in examples/org.toml"
        (work / "org.toml").write_text(org)
        self.cli("admin", "apply", "org.toml")
        config = readme_block("minimal-config")
        config = re.sub(r"127\.0\.0\.1:8787", f"127.0.0.1:{self.port}", config)
        config = re.sub(r"127\.0\.0\.1:8080", f"127.0.0.1:{emulator_port}", config)
        (work / "gaterouter.toml").write_text(config)

    def cli(self, *args: str) -> str:
        r = subprocess.run([str(BIN / "gaterouter"), *args], cwd=self.work, env=self.env, text=True, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"gaterouter {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def department_calls(self) -> dict[str, int]:
        req = urllib.request.Request(f"{self.url}/v1/analytics/breakdown?org=acme&by=department",
                                     headers={"authorization": f"Bearer {ADMIN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read())
        rows = body.get("rows", body) if isinstance(body, dict) else body
        out: dict[str, int] = {}
        for row in rows:
            key = row.get("group")  # the breakdown's value of `by`
            out[str(key)] = int(row.get("calls", row.get("count", 0)))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def prepare_rust(work: Path) -> list[str]:
    # A program using the `gaterouter` crate (built as the workspace member tests/readme/rust,
    # so it shares the tests' features and target dir).
    (work / "main.rs").write_text(RUST_MAIN)
    ok, out = check.build_rust_program(work / "main.rs")
    if not ok:
        raise RuntimeError("the Rust program does not compile:\n" + out)
    exe = work / "first-hour-rust"
    shutil.copy(BIN / "readme-block", exe)
    return [str(exe)]


def prepare_python(work: Path) -> list[str]:
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # As python/README.md: `pip install ./python` from the repository (debug profile: the
    # build reuses the workspace's target dir).
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "./python"], cwd=REPO, text=True, capture_output=True,
                       env={**os.environ, "MATURIN_PEP517_ARGS": "--profile dev", "CARGO_TARGET_DIR": str(TARGET)}, timeout=1200)
    if r.returncode != 0:
        raise RuntimeError("pip install ./python failed:\n" + r.stdout + r.stderr)
    (work / "main.py").write_text(PY_MAIN)
    return [str(venv / "bin" / "python"), str(work / "main.py")]


def prepare_node(work: Path) -> list[str]:
    check.ensure_node_addon()
    proj = work / "app"
    proj.mkdir()
    subprocess.run(["npm", "init", "-y"], cwd=proj, check=True, capture_output=True)
    # As README.md: `npm install ./node`.
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", str(REPO / "node")], cwd=proj, text=True, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("npm install ./node failed:\n" + r.stdout + r.stderr)
    (proj / "main.mjs").write_text(NODE_MAIN)
    return ["node", str(proj / "main.mjs")]


PREPARE = {"rust": prepare_rust, "python": prepare_python, "node": prepare_node}


def run_lang(lang: str, root: Path, emulator_port: int) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []
    work = root / lang
    work.mkdir()
    org = Org(work, emulator_port)
    try:
        cmd = PREPARE[lang](work)
        r = subprocess.run(cmd, cwd=work, env=org.env, text=True, capture_output=True, timeout=120)
        out = r.stdout + r.stderr
        calls: dict[str, int] = {}
        deadline = time.monotonic() + 15
        while r.returncode == 0 and time.monotonic() < deadline:
            calls = org.department_calls()
            if calls.get(DEPARTMENT):
                break
            time.sleep(0.2)
        ok = r.returncode == 0 and calls.get(DEPARTMENT) == 1
        detail = f"analytics by department: {calls}" if r.returncode == 0 else f"exit {r.returncode}"
        results.append((f"{lang} first call, record under department {DEPARTMENT}", ok, detail + ("" if ok else "\n" + out)))

        # The same project, with a wrong [identity] value.
        cfg = (work / "gaterouter.toml").read_text()
        wrong, n = re.subn(r"(\[identity\]\n)", rf"\g<1>{WRONG}\n", cfg)
        assert n == 1
        (work / "gaterouter.toml").write_text(wrong)
        r = subprocess.run(cmd, cwd=work, env=org.env, text=True, capture_output=True, timeout=120)
        out = r.stdout + r.stderr
        ok = r.returncode == 3 and "identity.department" in out
        results.append((f"{lang} wrong [identity] department fails with a Config error naming identity.department", ok,
                        (out.strip().splitlines() or [""])[0][:160] if ok else f"exit {r.returncode}\n{out}"))
    except Exception as e:  # noqa: BLE001
        results.append((f"{lang} setup", False, str(e)))
    finally:
        org.stop()
    return results


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    no_build = "--no-build" in argv  # the binaries in target/debug are current
    langs = [a for a in argv if a != "--no-build"] or ["rust", "python", "node"]
    if not no_build:
        check.build()
    root = Path(tempfile.mkdtemp(prefix="first-hour-"))
    emu_port = check.free_port()
    emu = subprocess.Popen([str(BIN / "gaterouter-emulator"), "--listen", f"127.0.0.1:{emu_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    passed = failed = 0
    try:
        if not check.wait_port(emu_port, emu, 60):
            raise SystemExit("first-hour: the emulator did not start")
        for lang in langs:
            t = time.monotonic()
            for name, ok, detail in run_lang(lang, root, emu_port):
                lines = detail.splitlines() or [""]
                print(f"first-hour {name}: {'PASS' if ok else 'FAIL'} {lines[0]}", flush=True)
                if not ok and len(lines) > 1:
                    print(check.tail("\n".join(lines[1:]), 30), flush=True)
                passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            print(f"first-hour: {lang} done in {time.monotonic() - t:.0f} s", flush=True)
    finally:
        emu.terminate()
        emu.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
