#!/usr/bin/env python3
"""Compare GateRouter's token counting with OpenAI's Python tiktoken on bench/corpus.txt.

Run through bench/run_tokens_bench.sh (which builds the Rust example in release mode):

    /tmp/tkvenv/bin/python bench/tokens_vs_tiktoken.py --rust-bin target/release/examples/token_count

Both sides count the same corpus in the same run; the script checks that every
implementation returns the same token count as tiktoken and prints MB/s and the ratio.
"""
import argparse
import importlib.util
import json
import os
import resource
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiktoken_env():
    """tiktoken downloads its rank files on first use; without network, point its cache at
    litellm's copy, or fill one from the tiktoken-rs crate's assets (the same files, whose
    SHA-256 tiktoken checks)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return
    spec = importlib.util.find_spec("litellm")
    if spec:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(pathlib.Path(spec.origin).parent / "litellm_core_utils" / "tokenizers")
        return
    import hashlib
    cargo_home = pathlib.Path(os.environ.get("CARGO_HOME", pathlib.Path.home() / ".cargo"))
    assets = sorted(cargo_home.glob("registry/src/*/tiktoken-rs-*/assets"))
    if not assets:
        return
    cache = pathlib.Path(tempfile.gettempdir()) / "tiktoken-cache-from-tiktoken-rs"
    cache.mkdir(exist_ok=True)
    for name in ["o200k_base", "cl100k_base"]:
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes((assets[-1] / f"{name}.tiktoken").read_bytes())
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


def best_of(fn, iters):
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust-bin", default=str(ROOT / "target" / "release" / "examples" / "token_count"))
    ap.add_argument("--corpus", default=str(ROOT / "bench" / "corpus.txt"))
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    tiktoken_env()

    t0 = time.perf_counter()
    import tiktoken
    enc_first = tiktoken.get_encoding("o200k_base")
    enc_first.encode_ordinary("Hello, world!")
    py_first_ms = (time.perf_counter() - t0) * 1e3

    text = pathlib.Path(args.corpus).read_text(encoding="utf-8")
    nbytes = len(text.encode("utf-8"))
    rows = []
    for enc_name, short in [("o200k_base", "o200k"), ("cl100k_base", "cl100k")]:
        enc = tiktoken.get_encoding(enc_name)
        want = len(enc.encode_ordinary(text))  # warm-up
        secs = best_of(lambda: enc.encode_ordinary(text), args.iters)
        py = {"impl": f"python tiktoken {tiktoken.__version__}", "encoding": short, "tokens": want, "mb_per_s": nbytes / secs / 1e6}
        rows.append(py)
        for impl in ["gaterouter", "gaterouter-single", "bpe-single", "tiktoken-rs"]:
            out = subprocess.run([args.rust_bin, args.corpus, impl, short, str(args.iters)], check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            r["impl"] = {"gaterouter": "gaterouter (parallel >256 KiB)", "gaterouter-single": "gaterouter single thread",
                         "bpe-single": "bpe-openai 0.3 single thread",
                         "tiktoken-rs": "tiktoken-rs 0.12 single thread"}[impl]
            r["identical"] = r["tokens"] == want
            r["ratio_vs_python"] = r["mb_per_s"] / py["mb_per_s"]
            rows.append(r)

    # First count after process start and resident memory: a fresh process on a tiny input.
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("hello")
        tiny = f.name
    startup = []
    for impl_enc in [("gaterouter", "o200k"), ("gaterouter", "cl100k"), ("bpe-single", "o200k"), ("tiktoken-rs", "o200k")]:
        walls, cpus, firsts = [], [], []
        for _ in range(5):
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = subprocess.run([args.rust_bin, tiny, impl_enc[0], impl_enc[1], "0"], check=True, capture_output=True, text=True).stdout
            walls.append((time.perf_counter() - t0) * 1e3)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) * 1e3)
            r = json.loads(out)
            firsts.append(r["first_count_ms"])
        startup.append({"impl": impl_enc[0], "encoding": impl_enc[1], "process_wall_ms_min": min(walls), "process_cpu_ms_min": min(cpus),
                        "first_count_ms_in_main": min(firsts), "peak_rss_kb": r["peak_rss_kb"]})
    os.unlink(tiny)

    print(f"corpus: {args.corpus} ({nbytes} bytes), best of {args.iters} passes\n")
    print(f"{'implementation':46} {'enc':7} {'tokens':>8} {'MB/s':>8} {'x python':>9} same")
    for r in rows:
        ratio = f"{r['ratio_vs_python']:.2f}x" if "ratio_vs_python" in r else "1.00x"
        same = ("yes" if r.get("identical") else "NO") if "identical" in r else "-"
        print(f"{r['impl']:46} {r['encoding']:7} {r['tokens']:>8} {r['mb_per_s']:>8.1f} {ratio:>9} {same}")
    print()
    print(f"python tiktoken: import + get_encoding + first count = {py_first_ms:.1f} ms (in this process)")
    print("(times below: best of 5 fresh processes counting 'Hello, world!')")
    for s in startup:
        print(f"{s['impl']} {s['encoding']}: first count {s['first_count_ms_in_main']:.1f} ms after main(); whole process {s['process_wall_ms_min']:.1f} ms wall, {s['process_cpu_ms_min']:.1f} ms CPU; peak RSS {s['peak_rss_kb'] / 1024:.1f} MiB")
    bad = [r for r in rows if r.get("identical") is False]
    if bad:
        print("MISMATCH:", bad, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
