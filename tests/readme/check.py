#!/usr/bin/env python3
"""The README is a test: run every fenced code block of the user-facing docs.

Usage: python3 tests/readme/check.py [--keep] [--no-build] [FILE.md ...]     (from anywhere; stdlib only)

For README.md, python/README.md, node/README.md, bindings/README.md and collector/*.md
(or the files given) every fenced block is run in the environment its language needs:

- sh/bash/shell: bash with `set -eo pipefail`, in a working directory of its own per
  file (blocks of one file share it, in order, like one terminal session: the directory,
  exported variables and aliases carry over). The directory holds symlinks to the
  repository's top-level entries (a fresh clone: `examples/org.toml` and `./python`
  resolve), `target/debug` is on PATH (`gaterouter`, `gaterouter-collector`,
  `gaterouter-emulator`, built once here), and `cargo` runs against the repository's
  manifest and target dir: `cargo run -p PKG -- ARGS` does the workspace build (a no-op
  after the tests; one feature set, no second build of the dependency tree) and runs PKG's
  binary, so the alias lines reuse the warm build. Background jobs (`... &`) are stopped when the file is done.
- rust: a program (`fn main`) built as the `readme-block` binary of the workspace member
  tests/readme/rust (README_BLOCK names the file; one workspace build, so nothing else is
  rebuilt) and run in the file's working directory.
- python: run by the file's venv (fresh, created here; the blocks install the package as
  the README says); a `fragment` is compiled only.
- js/javascript/ts/typescript: run as an ES module by node in the file's npm project
  (fresh, `npm install <repo>/node`, as the root README says); a `fragment` is
  syntax-checked only (`node --check`).
- toml: a GateRouter config is loaded by the real loader (`gaterouter --config F models`);
  an organization file (a `[org]` table) is applied with `gaterouter admin apply --dry-run`
  to the collector started here.
- kotlin, swift: need a marker (no app project here).

Servers: a provider emulator and a collector (SQLite, admin token in
GATEROUTER_COLLECTOR_ADMIN_TOKEN and GATEROUTER_ADMIN_TOKEN) are started on free loopback
ports; in every block `127.0.0.1:8080` / `localhost:8080` (the emulator's documented
port) and `127.0.0.1:8787` / `localhost:8787` (the collector's) are replaced by those
ports, and GATEROUTER_COLLECTOR_URL points at the collector, so runs never collide.
Provider key variables (OPENAI_API_KEY, ...) are removed: no block reaches a real provider.

Markers: an HTML comment on the line(s) right before a fence, read by this script:
  <!-- readme-check: skip reason="..." -->     not run; the reason is printed (required)
  <!-- readme-check: fragment reason="..." --> not a whole program: syntax-checked only
                                                (python, js, toml: parsed as TOML)
  <!-- readme-check: file=NAME -->             write the block to NAME in the working dir
                                                (and check it as its language says)
  <!-- readme-check: setup file=NAME -->       the same, done before the file's first block
  <!-- readme-check: serve port=N -->          a server in the foreground: run it with N
                                                mapped to a free port, PASS once it accepts
                                                connections, then stop it
  <!-- readme-check: own-collector -->         this block starts its own collector: from
                                                here on 8787 maps to a fresh port that the
                                                block's collector listens on
                                                (GATEROUTER_COLLECTOR_LISTEN/URL)
  <!-- readme-check: cwd=repo -->              run in the repository root (builds in place);
                                                later blocks stay in the file's directory
  <!-- readme-check: before="CMD" -->          a shell command run first (fixtures)
  <!-- readme-check: timeout=SECONDS -->       default 300
  <!-- readme-check: expect="REGEX" -->         the output must match REGEX too

Every working directory starts with ./gaterouter.toml = the root README's block marked
`name=emulator-config` (the built-in providers pointed at the emulator).

Output: one line per block, `FILE:LINE LANG PASS|FAIL|SKIP detail`, then
`N passed, N failed`; exit status 1 when a block failed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

# `npm install <repo>/node` compiles the addon (node/scripts/install.js): use the debug
# profile here, like the tests, so it shares their build instead of a second, release one.
os.environ.setdefault("GATEROUTER_NODE_PROFILE", "dev")
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BIN = TARGET / "debug"
ADMIN_TOKEN = "readme-check-admin-token-0123456789abcdef"
DEFAULT_FILES = ["README.md", "python/README.md", "node/README.md", "bindings/README.md"]
LANGS = {
    "sh": "sh", "bash": "sh", "shell": "sh", "console": "sh",
    "rust": "rust", "python": "python", "py": "python",
    "js": "js", "javascript": "js", "mjs": "js", "ts": "js", "typescript": "js",
    "kotlin": "kotlin", "kt": "kotlin", "swift": "swift", "toml": "toml",
}
PROVIDER_KEY_VARS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY",
                     "MISTRAL_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY", "GOOGLE_API_KEY"]
MARKER_RE = re.compile(r"^\s*<!--\s*readme-check:(.*?)-->\s*$")
FENCE_RE = re.compile(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_+-]*)[^`]*$")
ATTR_RE = re.compile(r'([A-Za-z_-]+)(?:=("(?:[^"\\]|\\.)*"|\S+))?')


class Block:
    def __init__(self, path: Path, line: int, lang: str, code: str, marker: dict[str, str]):
        self.path, self.line, self.lang, self.code, self.marker = path, line, lang, code, marker

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} {self.lang}"


def parse_marker(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in ATTR_RE.finditer(text):
        v = m.group(2)
        if v is None:
            v = "true"
        elif v.startswith('"'):
            v = v[1:-1].replace('\\"', '"')
        out[m.group(1)] = v
    return out


def extract(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        marker: dict[str, str] = {}
        j = start - 1
        while j >= 0 and MARKER_RE.match(lines[j]):
            marker.update(parse_marker(MARKER_RE.match(lines[j]).group(1)))  # type: ignore[union-attr]
            j -= 1
        lang = LANGS.get(info)
        if lang is None:
            if info:  # json, text, ...: data, not code
                continue
            continue
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n", marker))
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run(cmd: list[str] | str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def tail(text: str, n: int = 25) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join("    | " + l for l in lines[-n:])


class Servers:
    """The emulator and the checker's collector (one each for the whole run)."""

    def __init__(self, work: Path):
        self.procs: list[subprocess.Popen] = []
        self.emulator_port = free_port()
        self.procs.append(subprocess.Popen([str(BIN / "gaterouter-emulator"), "--listen", f"127.0.0.1:{self.emulator_port}"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.collector_port = free_port()
        log = open(work / "collector.log", "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "gaterouter-collector"), "--listen", f"127.0.0.1:{self.collector_port}", "--db", f"sqlite://{work / 'collector.db'}"],
            env={**os.environ, "GATEROUTER_COLLECTOR_ADMIN_TOKEN": ADMIN_TOKEN}, stdout=log, stderr=log))
        for port, proc in [(self.emulator_port, self.procs[0]), (self.collector_port, self.procs[1])]:
            if not wait_port(port, proc, 60):
                self.stop()
                raise SystemExit(f"readme-check: a server did not start on port {port} (see {work})")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


SH_PRELUDE = r"""
shopt -s expand_aliases
[ -f "$RC_STATE/env.sh" ] && . "$RC_STATE/env.sh"
[ -f "$RC_STATE/aliases.sh" ] && . "$RC_STATE/aliases.sh"
# A `cwd=repo` block (RC_PINNED) runs in the repository root and leaves the shared
# directory of the file's session as it was.
[ -z "${RC_PINNED:-}" ] && [ -f "$RC_STATE/cwd" ] && cd "$(cat "$RC_STATE/cwd")"
# `cargo run [-q] -p PKG [--] ARGS`: the workspace build (a no-op: it was built with the
# tests' features), then PKG's binary with ARGS. Other subcommands run against the
# repository's manifest.
cargo() {
    if [ "$1" = run ]; then
        shift
        local pkg=""
        while [ $# -gt 0 ]; do
            case "$1" in -q|--quiet) shift ;; -p|--package) pkg="$2"; shift 2 ;; --) shift; break ;; *) break ;; esac
        done
        (cd "$RC_REPO" && README_BLOCK= command cargo build -q --workspace --all-targets --exclude gaterouter-python --exclude gaterouter-node) || return
        case "$pkg" in gaterouter-cli) pkg=gaterouter ;; esac
        "$CARGO_TARGET_DIR/debug/$pkg" "$@"
    else
        local sub="$1"; shift
        command cargo "$sub" --manifest-path "$RC_REPO/Cargo.toml" "$@"
    fi
}
__rc_save() {
    # What the block exported; not what this checker sets for each block.
    export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|PATH|CI|VIRTUAL_ENV|CARGO_TARGET_DIR|MATURIN_PEP517_ARGS|GATEROUTER_COLLECTOR_URL|GATEROUTER_COLLECTOR_LISTEN|RC_[A-Z_]*|READMECHECK_[A-Z_]*)(=|$)' > "$RC_STATE/env.sh"
    alias -p > "$RC_STATE/aliases.sh"
    [ -n "${RC_PINNED:-}" ] || pwd > "$RC_STATE/cwd"
}
trap __rc_save EXIT
set -eo pipefail
"""


class FileRun:
    """State shared by the blocks of one markdown file."""

    def __init__(self, checker: "Checker", path: Path):
        self.checker = checker
        self.path = path
        slug = re.sub(r"[^A-Za-z0-9]+", "-", str(path.relative_to(REPO))).strip("-")
        self.work = checker.work / slug
        self.work.mkdir(parents=True)
        self.state = checker.work / (slug + ".state")
        self.state.mkdir()
        for entry in REPO.iterdir():
            if entry.name not in (".git", "target") and not entry.name.startswith("."):
                (self.work / entry.name).symlink_to(entry)
        self.collector_port = checker.servers.collector_port
        self.own_collector = False
        self.pgids: list[int] = []
        self.venv: Path | None = None
        self.npm: Path | None = None
        if checker.emulator_config is not None:
            (self.work / "gaterouter.toml").write_text(self.subst(checker.emulator_config.code))

    # -- environment -------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEY_VARS and not k.startswith("GATEROUTER_")}
        path = [str(BIN), env.get("PATH", "")]
        if self.venv is not None:
            path.insert(0, str(self.venv / "bin"))
            env["VIRTUAL_ENV"] = str(self.venv)
        env.update({
            "PATH": os.pathsep.join(path),
            "CI": "true",
            "CARGO_TARGET_DIR": str(TARGET),
            "MATURIN_PEP517_ARGS": "--profile dev",  # share the debug build (python/README.md, Tests)
            "GATEROUTER_COLLECTOR_URL": f"http://127.0.0.1:{self.collector_port}",
            "RC_STATE": str(self.state),
            "RC_REPO": str(REPO),
            "READMECHECK_EMULATOR": f"http://127.0.0.1:{self.checker.servers.emulator_port}",
        })
        if self.own_collector:
            env["GATEROUTER_COLLECTOR_LISTEN"] = f"127.0.0.1:{self.collector_port}"
        else:
            env["GATEROUTER_COLLECTOR_ADMIN_TOKEN"] = ADMIN_TOKEN
            env["GATEROUTER_ADMIN_TOKEN"] = ADMIN_TOKEN
        return env

    def subst(self, code: str, extra: dict[int, int] | None = None) -> str:
        ports = {8080: self.checker.servers.emulator_port, 8787: self.collector_port}
        ports.update(extra or {})
        for old, new in ports.items():
            code = re.sub(rf"\b(127\.0\.0\.1|localhost):{old}\b", rf"\g<1>:{new}", code)
        return code

    def cwd(self, b: Block) -> Path:
        return REPO if b.marker.get("cwd") == "repo" else self.work

    def spawn(self, cmd: list[str], b: Block, timeout: float) -> tuple[int, str]:
        # Output to a file, not a pipe: a background job of the block (a server started
        # with `&`) keeps the file open after the block's shell has exited.
        log = self.state / f"out-{b.line}-{len(self.pgids)}.log"
        with open(log, "w") as f:
            env = self.env()
            if b.marker.get("cwd") == "repo":
                env["RC_PINNED"] = "1"
            p = subprocess.Popen(cmd, cwd=self.cwd(b), env=env, text=True, start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        self.pgids.append(p.pid)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return 124, log.read_text(errors="replace") + f"\n(timed out after {timeout:.0f} s)"
        return rc, log.read_text(errors="replace")

    def stop(self) -> None:
        for pgid in self.pgids:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.3)
        for pgid in self.pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- runners ----------------------------------------------------------------------
    def before(self, b: Block) -> tuple[bool, str]:
        cmd = b.marker.get("before")
        if not cmd:
            return True, ""
        rc, out = self.spawn(["bash", "-c", SH_PRELUDE + self.subst(cmd)], b, 120)
        return rc == 0, out

    def run_sh(self, b: Block, timeout: float) -> tuple[bool, str]:
        if "serve" in b.marker:
            return self.serve(b, timeout)
        if "own-collector" in b.marker:
            self.own_collector = True
            self.collector_port = free_port()
        script = SH_PRELUDE + self.subst(b.code)
        rc, out = self.spawn(["bash", "-c", script], b, timeout)
        return rc == 0, out

    def serve(self, b: Block, timeout: float) -> tuple[bool, str]:
        port = int(b.marker.get("port", "8787"))
        new = free_port()
        script = SH_PRELUDE + self.subst(b.code, {port: new})
        log = self.state / f"serve-{b.line}.log"
        with open(log, "w") as f:
            p = subprocess.Popen(["bash", "-c", script], cwd=self.cwd(b), env=self.env(), stdin=subprocess.DEVNULL,
                                 stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        up = wait_port(new, p, timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            time.sleep(0.3)
        p.wait()
        out = log.read_text()
        return up, out if not up else f"served on 127.0.0.1:{new} (documented :{port}), stopped"

    def run_python(self, b: Block, timeout: float, fragment: bool) -> tuple[bool, str]:
        if fragment:
            import ast
            try:
                compile(b.code, str(b.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
            except SyntaxError as e:
                return False, f"syntax error: {e}"
            return True, "fragment: syntax only"
        py = str(self.venv / "bin" / "python") if self.venv else sys.executable
        src = self.state / f"block-{b.line}.py"
        src.write_text(self.subst(b.code))
        rc, out = self.spawn([py, str(src)], b, timeout)
        return rc == 0, out

    def ensure_npm(self) -> Path:
        if self.npm is None:
            ensure_node_addon()
            self.npm = self.work / "npm-project"
            self.npm.mkdir()
            r = run(["npm", "init", "-y"], cwd=self.npm)
            if r.returncode != 0:
                raise RuntimeError(r.stdout)
            # As the root README says: `npm install ./node` (a folder install links it).
            r = run(["npm", "install", "--no-audit", "--no-fund", str(REPO / "node")], cwd=self.npm)
            if r.returncode != 0:
                raise RuntimeError("npm install ./node failed:\n" + r.stdout)
            # The blocks read ./gaterouter.toml of the file's working directory.
        return self.npm

    def run_js(self, b: Block, timeout: float, fragment: bool) -> tuple[bool, str]:
        npm = self.ensure_npm()
        src = npm / f"block-{b.line}.mjs"
        src.write_text(self.subst(b.code))
        if fragment:
            rc, out = self.spawn(["node", "--check", str(src)], b, 60)
            return rc == 0, out if rc else "fragment: syntax only"
        rc, out = self.spawn(["node", str(src)], b, timeout)
        return rc == 0, out

    def run_toml(self, b: Block, path: Path, fragment: bool) -> tuple[bool, str]:
        try:
            import tomllib  # Python 3.11+
            data = tomllib.loads(b.code)
        except ImportError:
            data = {"org": True} if re.search(r"^\[org\]", b.code, re.M) else {}
        except ValueError as e:
            return False, f"not TOML: {e}"
        if fragment:
            return True, "fragment: TOML syntax only"
        if "org" in data:
            rc, out = self.spawn([str(BIN / "gaterouter"), "admin", "apply", str(path), "--dry-run"], b, 60)
            return rc == 0, ("org file, `gaterouter admin apply --dry-run`: " if rc == 0 else "") + " ".join(out.split())
        rc, out = self.spawn([str(BIN / "gaterouter"), "--config", str(path), "models"], b, 60)
        return rc == 0, out if rc else "config loaded by `gaterouter --config FILE models`"

    def run_rust(self, b: Block, timeout: float) -> tuple[bool, str]:
        if "fn main" not in b.code:
            return False, "not a program (no fn main): mark it `fragment` with a reason"
        src = self.state / f"block-{b.line}.rs"
        src.write_text(self.subst(b.code))
        ok, out = build_rust_program(src)
        if not ok:
            return False, "does not compile:\n" + out
        rc, out = self.spawn([str(BIN / "readme-block")], b, timeout)
        return rc == 0, out


class Checker:
    def __init__(self, keep: bool):
        self.keep = keep
        self.work = Path(tempfile.mkdtemp(prefix="readme-check-"))
        self.servers = Servers(self.work)
        # Every working directory starts with the root README's emulator config.
        self.emulator_config = next((b for b in extract(REPO / "README.md") if b.marker.get("name") == "emulator-config"), None)

    def check_file(self, path: Path) -> tuple[int, int, int]:
        blocks = extract(path)
        fr = FileRun(self, path)
        passed = failed = skipped = 0
        try:
            if any(b.lang == "python" and "fragment" not in b.marker and "skip" not in b.marker for b in blocks):
                venv = fr.work / "venv"
                r = run([sys.executable, "-m", "venv", str(venv)])
                if r.returncode != 0:
                    raise RuntimeError("python3 -m venv failed: " + r.stdout)
                fr.venv = venv
            for b in blocks:
                if "setup" in b.marker and "file" in b.marker:
                    (fr.work / b.marker["file"]).write_text(fr.subst(b.code))
            for b in blocks:
                status, detail = self.check_block(fr, b)
                print(f"{b.label} {status} {detail.splitlines()[0] if detail else ''}".rstrip(), flush=True)
                if status == "FAIL":
                    failed += 1
                    rest = detail.splitlines()[1:]
                    if rest:
                        print(tail("\n".join(rest), 40), flush=True)
                elif status == "SKIP":
                    skipped += 1
                else:
                    passed += 1
        finally:
            fr.stop()
        return passed, failed, skipped

    def check_block(self, fr: FileRun, b: Block) -> tuple[str, str]:
        m = b.marker
        if "skip" in m:
            if not m.get("reason"):
                return "FAIL", "skip marker without reason=\"...\""
            return "SKIP", m["reason"]
        fragment = "fragment" in m
        timeout = float(m.get("timeout", 300))
        try:
            ok, out = fr.before(b)
            if not ok:
                return "FAIL", "before= command failed\n" + out
            target = None
            if "file" in m:
                target = fr.cwd(b) / m["file"]
                if target.is_symlink():
                    target.unlink()  # never write through to the repository
                target.write_text(fr.subst(b.code))
            if b.lang == "sh":
                if fragment:
                    r = run(["bash", "-n"], input=b.code)
                    ok, out = r.returncode == 0, r.stdout or "fragment: syntax only"
                else:
                    ok, out = fr.run_sh(b, timeout)
            elif b.lang == "python":
                ok, out = fr.run_python(b, timeout, fragment)
            elif b.lang == "js":
                ok, out = fr.run_js(b, timeout, fragment)
            elif b.lang == "toml":
                if target is None:
                    target = fr.state / f"block-{b.line}.toml"
                    target.write_text(fr.subst(b.code))
                ok, out = fr.run_toml(b, target, fragment)
            elif b.lang == "rust":
                if fragment:
                    return "SKIP", "fragment: " + m.get("reason", "(no reason given)")
                ok, out = fr.run_rust(b, timeout)
            else:
                return "FAIL", f"no runner for {b.lang}: add a marker saying why it cannot run here"
        except Exception as e:  # noqa: BLE001 - report and continue with the next block
            return "FAIL", f"checker error: {e}"
        if fragment and ok and "reason" in m:
            out = f"{out.splitlines()[0] if out else 'fragment'} ({m['reason']})"
        if ok and "expect" in m and not re.search(m["expect"], out):
            return "FAIL", f"output does not match expect={m['expect']!r}\n" + out
        if ok:
            first = out.strip().splitlines()[0] if out.strip() else ""
            return "PASS", first[:120]
        return "FAIL", "exit status non-zero\n" + out

    def close(self) -> None:
        self.servers.stop()
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def ensure_node_addon() -> None:
    """node/README.md's source build (npm ci + napi build, debug) when the addon is missing."""
    if list((REPO / "node").glob("gaterouter.*.node")):
        return
    for cmd in (["npm", "ci", "--no-audit", "--no-fund"], ["npx", "napi", "build", "--platform", "--js", "native.js", "--dts", "native.d.ts"]):
        r = run(cmd, cwd=REPO / "node")
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed in node/:\n{r.stdout}")


WORKSPACE_BUILD = ["cargo", "build", "-q", "--workspace", "--all-targets", "--exclude", "gaterouter-python", "--exclude", "gaterouter-node"]


def build_rust_program(src: Path) -> tuple[bool, str]:
    """Build `src` as the `readme-block` binary of the workspace member tests/readme/rust
    (one workspace build: same features as the tests, nothing else is rebuilt)."""
    r = run(WORKSPACE_BUILD, cwd=REPO, env={**os.environ, "README_BLOCK": str(src), "CARGO_TARGET_DIR": str(TARGET)}, timeout=1200)
    return r.returncode == 0, r.stdout


def build() -> None:
    t = time.monotonic()
    # The workspace build the tests use (a no-op after them): building one package alone
    # would resolve other features and rebuild the dependency tree.
    r = run(WORKSPACE_BUILD, cwd=REPO, env={**os.environ, "README_BLOCK": ""})
    if r.returncode != 0:
        print(r.stdout)
        raise SystemExit("readme-check: cargo build failed")
    print(f"readme-check: binaries built in {time.monotonic() - t:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    keep = "--keep" in argv
    no_build = "--no-build" in argv  # the binaries in target/debug are current
    args = [a for a in argv if a not in ("--keep", "--no-build")]
    files = [REPO / a for a in args] or [REPO / f for f in DEFAULT_FILES] + sorted((REPO / "collector").glob("*.md"))
    if not no_build:
        build()
    t0 = time.monotonic()
    checker = Checker(keep)
    totals = [0, 0, 0]
    try:
        for f in files:
            t = time.monotonic()
            p, fl, s = checker.check_file(f.resolve())
            totals = [totals[0] + p, totals[1] + fl, totals[2] + s]
            print(f"readme-check: {f.relative_to(REPO)} done in {time.monotonic() - t:.0f} s", flush=True)
    finally:
        checker.close()
    if keep:
        print(f"readme-check: working directories kept in {checker.work}")
    print(f"readme-check: {time.monotonic() - t0:.0f} s")
    print(f"readme-check: {totals[2]} skipped (each with its marker's reason above)")
    print(f"{totals[0]} passed, {totals[1]} failed")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
