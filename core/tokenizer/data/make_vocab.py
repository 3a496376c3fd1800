#!/usr/bin/env python3
"""Convert tiktoken rank files (`<base64 token> <rank>` per line) into the compact vocab
this crate embeds: for each rank in order, one length byte then the token's bytes.

    python3 core/tokenizer/data/make_vocab.py PATH/o200k_base.tiktoken core/tokenizer/data/o200k_base.vocab

The rank files are OpenAI's (https://openaipublic.blob.core.windows.net/encodings/), the
same bytes tiktoken and the tiktoken-rs crate (assets/) ship. Ranks must be dense 0..n-1
and tokens at most 255 bytes; the script checks both and prints the SHA-256 of the input.
"""
import base64
import hashlib
import sys


def main(src: str, dst: str) -> None:
    raw = open(src, "rb").read()
    out = bytearray()
    for expected, line in enumerate(raw.splitlines()):
        token_b64, rank = line.split()
        if int(rank) != expected:
            sys.exit(f"{src}: rank {rank} where {expected} was expected (ranks must be dense)")
        token = base64.b64decode(token_b64)
        if not 0 < len(token) < 256:
            sys.exit(f"{src}: token of rank {rank} is {len(token)} bytes (1..255 allowed)")
        out.append(len(token))
        out += token
    open(dst, "wb").write(out)
    print(f"{dst}: {expected + 1} tokens, {len(out)} bytes; source sha256 {hashlib.sha256(raw).hexdigest()}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
