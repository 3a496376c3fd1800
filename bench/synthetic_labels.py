#!/usr/bin/env python3
"""Semi-synthetic routing labels: dev.jsonl's prompts with outcomes drawn from a known,
learnable, per-subject signal (bench/RESULTS.md, "The learner on a known per-subject signal").

Every source of the file (an MMLU subject, gsm8k, mt_bench) gets its own weak-model accuracy
w ~ U(0.45, 0.9) and strong-model gain g ~ U(0, spread) * (1 - w) / 0.55; each prompt's
weak_score / strong_score are 0/1 draws with those rates, correlated as real answers are (the
same uniform draw decides both for 80 % of the prompts). Only the text says which subject a
prompt is from, so a router can learn the signal from words, as it would on an organization's
own traffic. The prompts, ids and sources are dev.jsonl's; only the two scores change.

    python3 bench/synthetic_labels.py SPREAD SEED OUT.jsonl [DEV.jsonl]
    python3 bench/synthetic_labels.py 1.0 1 /tmp/syn.jsonl
"""
import json
import random
import sys


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    spread, seed, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dev = sys.argv[4] if len(sys.argv) == 5 else "tests/data/routing/dev.jsonl"
    if not 0.0 <= spread <= 1.0:
        print(f"SPREAD = {spread} must be in [0, 1]", file=sys.stderr)
        return 2
    rng = random.Random(seed)
    params = {}
    with open(dev) as f, open(out, "w") as o:
        for line in f:
            d = json.loads(line)
            s = d["source"]
            if s not in params:
                w = rng.uniform(0.45, 0.9)
                params[s] = (w, rng.uniform(0, spread) * (1 - w) / 0.55)
            w, g = params[s]
            u = rng.random()
            v = u if rng.random() < 0.8 else rng.random()
            d["weak_score"] = 1.0 if u < w else 0.0
            d["strong_score"] = 1.0 if v < min(1.0, w + g) else 0.0
            o.write(json.dumps(d) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
