#!/usr/bin/env python3
"""Write the seed corpus fuzz/corpus/<target>/seed-* from the repository's own examples
(core/tests/fixtures, tests/vectors/records.json, examples/org.toml, the README's config
blocks), in each target's input layout (fuzz/src/lib.rs). Deterministic; run it again
after changing a layout or a fixture: python3 fuzz/make_seeds.py

Inputs libFuzzer found and that are worth keeping are added to corpus/<target>/ under
their hash names by hand (README.md); this script only rewrites the seed-* files."""

import json
import pathlib
import re
import struct
import tomllib
import zlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
FIX = ROOT / "core" / "tests" / "fixtures"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def clear():
    for f in CORPUS.glob("*/seed-*"):
        f.unlink()


OPENAI_RESPONSE = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "refusal": None,
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                 "logprobs": None, "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
              "prompt_tokens_details": {"cached_tokens": 1536}, "completion_tokens_details": {"reasoning_tokens": 256}},
})
DEEPSEEK_RESPONSE = json.dumps({
    "id": "d1", "object": "chat.completion", "created": 1700000000, "model": "deepseek-reasoner",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "4", "reasoning_content": "2+2=4"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "prompt_cache_hit_tokens": 0,
              "prompt_cache_miss_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 12}},
})


def chunk(delta, finish=None, usage=None, choices=True):
    c = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [], "usage": usage}
    return "data: " + json.dumps(c) + "\n\n"


OPENAI_STREAM = "".join([
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}),
    chunk({}, "tool_calls"),
    chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
                     "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}, choices=False),
    "data: [DONE]\n\n",
])
DEEPSEEK_STREAM = "".join([
    ": keep-alive\n\n",
    chunk({"role": "assistant", "reasoning_content": "think"}),
    chunk({"content": "4"}, "stop"),
    chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, choices=False),
    "data: [DONE]\n\n",
])


def sse():
    for f in sorted(FIX.glob("*/*.sse")):
        write("sse", f"{f.parent.name}-{f.stem}", b"\x00" + f.read_bytes())
    write("sse", "openai-stream-split", b"\x03\x01\x07\x40" + OPENAI_STREAM.encode())
    write("sse", "crlf-bom-cr", b"\x02\x05\x00" + "\ufeffdata: héllo 世界\r\n\r\nevent: e\rdata:z\r\rid: 7\ndata: [DONE]\n\n".encode())
    write("sse", "comments-multiline-unterminated", b"\x01\x02" + b": ping\n\nevent: message_start\ndata: {\"a\":1}\ndata: x\n\nretry: 10\nid\ndata")
    write("sse", "invalid-utf8", b"\x00data: \xff\xfe\n\n")


def per_provider(target, openai, deepseek, fixtures):
    """One seed per provider: selector byte 0-3 (openai, deepseek, anthropic, gemini)."""
    write(target, "openai", b"\x00" + openai.encode())
    write(target, "deepseek", b"\x01" + deepseek.encode())
    for sel, provider in ((2, "anthropic"), (3, "gemini")):
        for f in sorted((FIX / provider).glob(fixtures)):
            write(target, f"{provider}-{f.stem}", bytes([sel]) + f.read_bytes())


def provider_response():
    per_provider("provider_response", OPENAI_RESPONSE, DEEPSEEK_RESPONSE, "response_*.json")
    # Errors: byte 0 bit 2 (+ bit 3: retry-after), byte 1 = status - 400.
    write("provider_response", "openai-429", bytes([4 | 8, 29]) + b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}')
    write("provider_response", "openai-context", bytes([4, 0]) + b'{"error":{"message":"maximum context length is 128000 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}')
    write("provider_response", "anthropic-529", bytes([4 | 2, 129]) + b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    write("provider_response", "gemini-400", bytes([4 | 3, 0]) + b'{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT"}}')
    write("provider_response", "html-502", bytes([4 | 1, 102]) + b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>")


def provider_stream():
    per_provider("provider_stream", OPENAI_STREAM, DEEPSEEK_STREAM, "*.sse")
    write("provider_stream", "openai-error-event", b"\x00" + b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n')


def readme_toml_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```toml\n(.*?)```", text, re.S)


def config():
    sdk = [b for b in readme_toml_blocks() if "[providers" in b or "[identity]" in b or "[routing]" in b]
    for i, b in enumerate(sdk[:4]):
        write("config", f"readme-{i}", b"\x00" + b.encode())
    parsed = tomllib.loads(sdk[0])
    write("config", "json", b"\x01" + json.dumps(parsed).encode())
    write("config", "json-routing", b"\x01" + json.dumps({
        "identity": {"org": "acme", "api_key_id": "k1"},
        "routing": {"policy": "cheapest", "light": ["openai/gpt-4o-mini"], "max_fallbacks": 1},
        "prices": {"openai/gpt-4o-mini": {"input": 0.15, "output": 0.6}},
        "retry": {"max_retries": 3, "initial_backoff_ms": 100, "max_backoff_ms": 2000},
    }).encode())
    write("config", "collector", b"\x02" + b'listen = "127.0.0.1:8787"\ndb = "sqlite://collector.db"\nadmin_token_sha256 = "'
          + b"ab" * 32 + b'"\nmax_body_bytes = 1048576\nrate_limit_records_per_sec = 100\nunknown_model = "refuse"\n'
          b'max_record_age_days = 35\nlog_format = "json"\nstrongest_model = "openai/gpt-4o"\n')


def orgfile():
    text = (ROOT / "examples" / "org.toml").read_text()
    write("orgfile", "example-toml", b"\x00" + text.encode())
    parsed = tomllib.loads(text)
    write("orgfile", "example-yaml", b"\x01" + yaml.safe_dump(parsed, sort_keys=False, allow_unicode=True).encode())
    write("orgfile", "example-json", b"\x02" + json.dumps(parsed).encode())
    write("orgfile", "minimal-toml", b"\x00" + b'[org]\nid = "o"\nname = "O"\n')


def frame(payload):
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def spool():
    rec = lambda i, s: json.dumps({"id": i, "seq": s, "ts_end": 1}, separators=(",", ":")).encode()
    # Layout: flags (bits 0-1 prefix records, 2 magic, 3 suffix, 4 second segment,
    # 5 cursor: segment byte + u16 LE offset), then the garbage.
    write("spool", "clean", bytes([2 | 4 | 8 | 16]))
    write("spool", "torn-tail", bytes([3 | 4]) + frame(rec("g0", 5))[:-3])
    write("spool", "flipped-byte", bytes([1 | 4 | 8]) + frame(rec("g1", 6)).replace(b"g1", b"g\x01"))
    write("spool", "huge-length", bytes([2 | 4 | 8 | 16]) + struct.pack("<II", 0xFFFFFFF0, 0) + b"{garbage}")
    write("spool", "frames-in-garbage", bytes([1 | 4 | 8]) + b"\x00" * 5 + frame(rec("g2", 7)) + b"\xff" * 3 + frame(rec("g3", 8)))
    write("spool", "cursor-mid-frame", bytes([2 | 4 | 16 | 32, 1]) + struct.pack("<H", 20) + b"xx")
    write("spool", "cursor-past-end", bytes([1 | 4 | 8 | 32, 1]) + struct.pack("<H", 60000))
    write("spool", "cursor-later-segment", bytes([3 | 4 | 16 | 32, 3]) + struct.pack("<H", 8))
    write("spool", "no-magic", bytes([2 | 8]) + b"GRSPOOL2")


def ingest():
    v = json.loads((ROOT / "tests" / "vectors" / "records.json").read_text())
    wires = []
    for vec in v["vectors"]:
        w = dict(vec["record"])
        w["signature"] = vec["signature"]
        wires.append(w)
    write("ingest", "vectors", json.dumps({"records": wires}))
    # Keys by name (fuzz/src/lib.rs key_for): department-bound, project-bound, revoked,
    # unknown, two public keys; a duplicate id, a non-UUID id and a non-object.
    variants = []
    for key, w in zip(["k-dept", "k-proj", "revoked-1", "nokey-1", "k-multi"], wires):
        w = dict(w, api_key_id=key)
        variants.append(w)
    variants.append(dict(wires[0]))
    variants.append(dict(wires[1], id="not-a-uuid"))
    variants.append([1, 2])
    write("ingest", "keys-and-malformed", json.dumps({"records": variants}))
    write("ingest", "scope-violation", json.dumps({"records": [dict(wires[1], api_key_id="k-dept", department="legal")]}))
    write("ingest", "unknown-model-huge-tokens", json.dumps({"records": [
        dict(wires[0], model="no-such-model", prompt_tokens=2**53 - 1),
        dict(wires[2], id="0192b3c4-d5e6-7f00-8a1b-2c3d4e5f60aa", ts_end=2**53, cost_micros=2**62)]}))
    write("ingest", "empty", '{"records":[]}')


if __name__ == "__main__":
    clear()
    for f in (sse, provider_response, provider_stream, config, orgfile, spool, ingest):
        f()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"seeds written; corpus is {total} bytes")
