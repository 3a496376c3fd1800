#!/usr/bin/env python3
"""Build bench/corpus.txt: a fixed ~1 MB mixed corpus (English prose, code, CJK).

Sources are texts that ship with CPython 3.11 (PSF licence): the reference-manual
prose in pydoc_data/topics.py, standard-library source code, and the UTF-8 CJK
sample texts of Lib/test/cjkencodings. The result is committed, so benchmarks do not
depend on this script or on the Python version; rerun it only to rebuild the file.
"""
import os
import pathlib
import sys

LIMIT = 1_000_000
lib = pathlib.Path(os.__file__).parent
out = pathlib.Path(__file__).with_name("corpus.txt")

def prose(budget):
    from pydoc_data.topics import topics
    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text[:budget]

def code(budget):
    files = ["argparse.py", "typing.py", "dataclasses.py", "json/decoder.py", "json/encoder.py",
             "textwrap.py", "fractions.py", "statistics.py", "inspect.py", "tokenize.py"]
    text = "\n\n".join((lib / f).read_text(encoding="utf-8") for f in files)
    return text[:budget]

def cjk():
    d = lib / "test" / "cjkencodings"
    seen, parts = set(), []
    for p in sorted(d.glob("*-utf8.txt")):
        t = p.read_text(encoding="utf-8")
        if t not in seen:
            seen.add(t)
            parts.append(t)
    unique = "\n\n".join(parts)
    # Only ~7 KB of distinct CJK prose ships with CPython; repeat it to ~12% of the
    # corpus. BPE counting has no cross-piece state, so repetition does not flatter speed.
    return "\n\n".join([unique] * 17)

c = cjk()
body = prose(480_000) + "\n\n" + c + "\n\n" + code(400_000)
data = body.encode("utf-8")[:LIMIT].decode("utf-8", errors="ignore")
out.write_text(data, encoding="utf-8")
print(f"wrote {out} ({len(data.encode('utf-8'))} bytes, {len(c.encode('utf-8'))} bytes CJK)", file=sys.stderr)
