#!/usr/bin/env python3
"""Independent generator of the usage-record test vectors (tests/vectors/records.json).

It shares no code with the Rust implementation: its own RFC 8785 (JCS) canonicalizer
below, and Ed25519 from the `cryptography` package. The Rust test
`core/usage/tests/usage_vectors.rs` recomputes every canonical string and signature and must
match this file byte for byte.

    python3 -m venv /tmp/vecvenv && /tmp/vecvenv/bin/pip install cryptography
    /tmp/vecvenv/bin/python tests/vectors/gen_records.py > tests/vectors/records.json
"""
import base64
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives import serialization

# RFC 8032 section 7.1, TEST 1 secret key: a fixed, public, test-only seed.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
MAX_SAFE = 2**53 - 1


def jcs(v):
    """RFC 8785 canonical JSON, integers only."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if abs(v) > MAX_SAFE:
            raise ValueError("integer out of the exact IEEE-754 range")
        return str(v)
    if isinstance(v, float):
        raise ValueError("floats are not used in usage records")
    if isinstance(v, str):
        return jcs_string(v)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v.keys(), key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs_string(k) + ":" + jcs(v[k]) for k in keys) + "}"
    raise TypeError(type(v))


SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def jcs_string(s):
    out = ['"']
    for ch in s:
        if ch in SHORT:
            out.append(SHORT[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


SDK = {"name": "gaterouter-rust", "version": "0.1.0", "language": "rust"}

RECORDS = [
    (
        "minimal: optional fields absent, no tags",
        {
            "schema_version": 1,
            "id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6071",
            "seq": 1,
            "ts_start": 1732500000000,
            "ts_end": 1732500000450,
            "api_key_id": "key_test_1",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "cached_prompt_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_micros": 4,
            "latency_ms": 450,
            "status": "ok",
            "attempts": 1,
            "stream": False,
            "tags": {},
            "sdk": SDK,
        },
    ),
    (
        "full: identity, route, ttft, unicode tags ordered by UTF-16 and escaped values",
        {
            "schema_version": 1,
            "id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6072",
            "seq": 2,
            "ts_start": 1732500001000,
            "ts_end": 1732500003500,
            "org": "org_acme",
            "department": "research",
            "project": "proj-42",
            "group": "ml-platform",
            "user": "u_éva",
            "api_key_id": "key_test_1",
            "provider": "anthropic",
            "model": "claude-3-5-haiku-latest",
            "route": {"mode": "auto", "tier": "small", "score": 731},
            "prompt_tokens": 2048,
            "completion_tokens": 512,
            "cached_prompt_tokens": 1024,
            "cache_write_tokens": 256,
            "reasoning_tokens": 128,
            "cost_micros": 1875,
            "latency_ms": 2500,
            "time_to_first_token_ms": 320,
            "status": "ok",
            "attempts": 2,
            "stream": True,
            "tags": {
                "a": "plain",
                "B": "upper sorts first",
                "é": "café \u00e9",
                "\U0001F600": "emoji key (surrogate pair sorts before U+E000 in UTF-16)",
                "\ue000": "private use",
                "esc": "quote \" backslash \\ nl \n tab \t bell \u0007 us \u001f del \u007f ls \u2028",
                "empty": "",
            },
            "sdk": {"name": "gaterouter-python", "version": "0.1.0", "language": "python"},
        },
    ),
    (
        "error status, explicit route without tier or score",
        {
            "schema_version": 1,
            "id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6073",
            "seq": 3,
            "ts_start": 1732500004000,
            "ts_end": 1732500004000,
            "org": "org_acme",
            "api_key_id": "key_test_1",
            "provider": "gemini",
            "model": "gemini-2.0-flash",
            "route": {"mode": "explicit"},
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_prompt_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_micros": 0,
            "latency_ms": 0,
            "status": "RATE_LIMITED",
            "attempts": 3,
            "stream": False,
            "tags": {"retry": "exhausted"},
            "sdk": SDK,
        },
    ),
    (
        "cancelled stream, largest exact integers, negative score",
        {
            "schema_version": 1,
            "id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6074",
            "seq": MAX_SAFE,
            "ts_start": 1732500005000,
            "ts_end": 1732500009999,
            "api_key_id": "key_test_1",
            "provider": "my-vllm",
            "model": "qwen2.5-72b",
            "route": {"mode": "auto", "tier": "large", "score": -5},
            "prompt_tokens": MAX_SAFE,
            "completion_tokens": 7,
            "cached_prompt_tokens": MAX_SAFE,
            "cache_write_tokens": 0,
            "reasoning_tokens": 7,
            "cost_micros": 9007199254,
            "latency_ms": 4999,
            "time_to_first_token_ms": 0,
            "status": "cancelled",
            "attempts": 1,
            "stream": True,
            "tags": {"日本語": "値", "k": "v"},
            "sdk": SDK,
        },
    ),
    (
        "denied by the organization policy: rule and level, zero tokens and cost",
        {
            "schema_version": 1,
            "id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6075",
            "seq": 5,
            "ts_start": 1732500010000,
            "ts_end": 1732500010002,
            "org": "org_acme",
            "department": "research",
            "api_key_id": "key_test_1",
            "provider": "gemini",
            "model": "gemini-2.5-flash",
            "route": {"mode": "explicit"},
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_prompt_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_micros": 0,
            "denied_rule": "allow_models",
            "denied_level": "department:research",
            "latency_ms": 2,
            "status": "denied",
            "attempts": 1,
            "stream": False,
            "tags": {},
            "sdk": SDK,
        },
    ),
    (
        "learning auto call: features without text, arm and model propensities, exploration",
        {
            "schema_version": 1,
            "id": "0192b3c4-d5e6-7f00-8a1b-2c3d4e5f6076",
            "seq": 6,
            "ts_start": 1732500011000,
            "ts_end": 1732500011800,
            "org": "org_acme",
            "project": "proj-42",
            "api_key_id": "key_test_1",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "route": {
                "mode": "auto",
                "tier": "standard",
                "score": 412,
                "weights": "w-3f2a9c",
                "propensity_ppm": 933333,
                "model_propensity_ppm": 350000,
                "explored": False,
                "features": {"bits": 18, "structural": [120000, 0, -35000, 1000000], "terms": [[17, 1], [40961, 2], [262143, 1]]},
            },
            "prompt_tokens": 180,
            "completion_tokens": 64,
            "cached_prompt_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_micros": 66,
            "latency_ms": 800,
            "status": "ok",
            "attempts": 1,
            "stream": False,
            "tags": {},
            "sdk": SDK,
        },
    ),
]


def main():
    sk = Ed25519PrivateKey.from_private_bytes(SEED)
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    vectors = []
    for name, rec in RECORDS:
        canonical = jcs(rec)
        sig = sk.sign(canonical.encode("utf-8"))
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, canonical.encode("utf-8"))
        vectors.append({
            "name": name,
            "record": rec,
            "canonical": canonical,
            "signature": base64.b64encode(sig).decode(),
        })
    out = {
        "description": "Usage-record test vectors: record -> RFC 8785 canonical JSON (UTF-8) -> Ed25519 signature "
                       "(standard base64). Generated by tests/vectors/gen_records.py (Python `cryptography`, own JCS).",
        "seed_base64": base64.b64encode(SEED).decode(),
        "private_key_pem": pem,
        "public_key": base64.b64encode(pk).decode(),
        "vectors": vectors,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
