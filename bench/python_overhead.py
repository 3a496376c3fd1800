"""Per-call overhead of the Python SDKs against the provider emulator, side by side in one run.

Contenders, all on the same emulator process and the same OpenAI-format route
(`/openai/v1/chat/completions`), each with one client reused for every call:

- `httpx`: a raw `httpx.Client().post(...)` of the same request (the baseline),
- `gaterouter`: `gaterouter.Client(...).chat.completions.create(...)` (records off),
- `gaterouter+records`: the same with signed usage records written to a local spool,
- `openai`: the official SDK, `openai.OpenAI(base_url=...).chat.completions.create(...)`,
- `litellm`: `litellm.completion(...)` with its price map read locally
  (`LITELLM_LOCAL_MODEL_COST_MAP=True`).

Overhead = a contender's median call time minus the raw httpx median of the same run.
Calls run sequentially, in interleaved blocks (every contender runs a block of calls in
turn) so machine-load drift hits all of them alike. Then `import` time of each package in
a fresh interpreter (median of several).

    python bench/python_overhead.py --emulator target/debug/gaterouter-emulator --calls 2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Give me three facts about the Moon, briefly."},
]
RECORDS_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="  # tests/vectors/records.json


def start_emulator(binary: str) -> "tuple[subprocess.Popen[str], str]":
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        raise SystemExit(f"unexpected emulator banner: {line!r}")
    return proc, line.split(" ", 2)[2]


def contenders(base: str, spool: str, only: List[str]) -> Dict[str, Callable[[], Any]]:
    url = base + "/openai/v1"
    out: Dict[str, Callable[[], Any]] = {}

    import httpx

    hx = httpx.Client(timeout=30)
    body = {"model": MODEL, "messages": MESSAGES}
    headers = {"authorization": "Bearer emulator-key"}

    def raw() -> Any:
        r = hx.post(url + "/chat/completions", json=body, headers=headers)
        r.raise_for_status()
        return r.json()

    out["httpx"] = raw

    import gaterouter

    providers = {"openai": {"kind": "openai", "base_url": url, "api_key": "emulator-key"}}
    gr = gaterouter.Client({"providers": providers, "builtin_providers": False})
    out["gaterouter"] = lambda: gr.chat.completions.create(model="openai/" + MODEL, messages=MESSAGES)

    os.environ["GATEROUTER_SIGNING_KEY"] = RECORDS_SEED
    grr = gaterouter.Client(
        {
            "providers": providers,
            "builtin_providers": False,
            "identity": {"org": "bench", "api_key_id": "k_bench"},
            "reporting": {"spool_dir": spool},
        }
    )
    out["gaterouter+records"] = lambda: grr.chat.completions.create(model="openai/" + MODEL, messages=MESSAGES)

    if "openai" in only:
        import openai

        oa = openai.OpenAI(base_url=url, api_key="emulator-key", max_retries=0)
        out["openai"] = lambda: oa.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]

    if "litellm" in only:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        out["litellm"] = lambda: litellm.completion(model="openai/" + MODEL, messages=MESSAGES, api_base=url, api_key="emulator-key")
    return out


def check_answers(fns: Dict[str, Callable[[], Any]]) -> None:
    """Every contender really gets the emulator's answer (guards against measuring errors)."""
    for name, fn in fns.items():
        r = fn()
        text = r["choices"][0]["message"]["content"] if isinstance(r, dict) else r.choices[0].message.content
        if "three facts about the Moon" not in (text or ""):
            raise SystemExit(f"{name}: unexpected answer {text!r}")


def measure(fns: Dict[str, Callable[[], Any]], calls: int, block: int, warmup: int) -> "tuple[Dict[str, List[float]], Dict[str, float]]":
    """Wall time of every call (us), and CPU time of this process per call (us, all its
    threads: gaterouter's runtime threads count)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {n: [] for n in fns}
    cpu: Dict[str, int] = {n: 0 for n in fns}
    clock = time.perf_counter_ns
    done = 0
    while done < calls:
        n = min(block, calls - done)
        for name, fn in fns.items():
            t = times[name]
            c0 = time.process_time_ns()
            for _ in range(n):
                t0 = clock()
                fn()
                t.append((clock() - t0) / 1000.0)
            cpu[name] += time.process_time_ns() - c0
        done += n
    return times, {n: c / 1000.0 / calls for n, c in cpu.items()}


def pct(xs: List[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def import_time(module: str, runs: int) -> float:
    """Median wall time of `import module` in a fresh interpreter, in ms."""
    code = f"import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)  # warm the file cache
    ms = [float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout) for _ in range(runs)]
    return statistics.median(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="target/debug/gaterouter-emulator")
    ap.add_argument("--calls", type=int, default=2000, help="calls per contender")
    ap.add_argument("--block", type=int, default=100, help="calls per contender per interleaved block")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--import-runs", type=int, default=9)
    ap.add_argument("--only", default="openai,litellm", help="optional contenders to include")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()

    proc, base = start_emulator(args.emulator)
    try:
        with tempfile.TemporaryDirectory() as spool:
            fns = contenders(base, spool, args.only.split(","))
            check_answers(fns)
            times, cpu = measure(fns, args.calls, args.block, args.warmup)
    finally:
        proc.terminate()
        proc.wait()

    base_med = statistics.median(times["httpx"])
    rows = {}
    for name, t in times.items():
        med = statistics.median(t)
        rows[name] = {"median_us": med, "p99_us": pct(t, 99), "overhead_us": med - base_med, "cpu_us_per_call": cpu[name]}
    gr_over = rows["gaterouter"]["overhead_us"]
    # A negative overhead (gaterouter faster than the raw httpx POST) makes ratios
    # meaningless; compare against a floor of 1 us and say so.
    gr_floor = max(gr_over, 1.0)

    import platform

    print(f"python {platform.python_version()}, {args.calls} sequential calls per contender (blocks of {args.block}), load avg {os.getloadavg()[0]:.2f}")
    print()
    print("| client | median us/call | p99 us/call | overhead us (median - httpx median) | overhead / gaterouter's | client CPU us/call | CPU / gaterouter's |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        if name in ("httpx", "gaterouter"):
            ratio = ""
        elif gr_over > 0:
            ratio = f"{r['overhead_us'] / gr_over:.1f}x"
        else:
            ratio = "n/a (gaterouter <= baseline)"
        cpu_ratio = f"{r['cpu_us_per_call'] / rows['gaterouter']['cpu_us_per_call']:.1f}x"
        print(f"| {name} | {r['median_us']:.0f} | {r['p99_us']:.0f} | {r['overhead_us']:.0f} | {ratio} | {r['cpu_us_per_call']:.0f} | {cpu_ratio} |")

    # `json` for reference: the stdlib module gaterouter itself imports (with re, enum, typing).
    imports = {m: import_time(m, args.import_runs) for m in ["json", "gaterouter", "openai", "litellm"] if m in ("json", "gaterouter") or m in args.only}
    print()
    print(f"| import (fresh interpreter, median of {args.import_runs}) | ms |")
    print("|---|---:|")
    for m, ms in imports.items():
        print(f"| `import {m}` | {ms:.1f} |")

    print()
    if "litellm" in rows:
        lo = rows["litellm"]["overhead_us"]
        print(f"goal overhead >= 10x lower than litellm's: gaterouter {gr_over:.0f} us vs litellm {lo:.0f} us -> {'met' if lo >= 10 * gr_floor else 'NOT met'}")
    if "openai" in rows:
        print(f"goal overhead no worse than openai: {gr_over:.0f} us vs {rows['openai']['overhead_us']:.0f} us -> {'met' if gr_over <= rows['openai']['overhead_us'] else 'NOT met'}")
    print(f"goal import under 50 ms: {imports['gaterouter']:.1f} ms -> {'met' if imports['gaterouter'] < 50 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"calls": args.calls, "rows": rows, "import_ms": imports, "python": platform.python_version()}, f, indent=2)


if __name__ == "__main__":
    main()
