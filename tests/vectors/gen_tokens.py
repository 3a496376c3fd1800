#!/usr/bin/env python3
"""Generate the token and cost test vectors from independent references.

    python3 -m venv /tmp/tkvenv && /tmp/tkvenv/bin/pip install tiktoken litellm mistral-common
    /tmp/tkvenv/bin/python tests/vectors/gen_tokens.py

- tokens.json: texts with exact counts from OpenAI's Python `tiktoken` (o200k_base,
  cl100k_base), special-token look-alikes encoded as plain text; plus reference counts
  from the tokenizers we calibrate the estimators against (legacy Claude and DeepSeek-V3
  tokenizers shipped in `litellm`, Mistral Tekken shipped in `mistral-common`).
- chat_tokens.json: chat requests with the billed prompt tokens per OpenAI model, using
  the OpenAI cookbook formulas (messages, names, tools) and the vision-guide image
  formulas, counted with tiktoken.
- cost.json: usage objects with the expected cost, computed here with Python's Decimal
  from core/pricing/data/prices.json (rounded half-up to micro-dollars once).

tiktoken cannot download its files here: TIKTOKEN_CACHE_DIR is pointed at the copies
litellm ships (set below if unset).
"""
import base64
import json
import math
import os
import pathlib
import struct
import sys
import zlib
from decimal import Decimal, ROUND_HALF_UP

import importlib.util

# Only litellm's bundled tokenizer files are used; the package itself is not imported
# (importing it tries to fetch a price list from the network).
TOKDIR = pathlib.Path(importlib.util.find_spec("litellm").origin).parent / "litellm_core_utils" / "tokenizers"
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TOKDIR))
import tiktoken  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "vectors"
O200K = tiktoken.get_encoding("o200k_base")
CL100K = tiktoken.get_encoding("cl100k_base")
ENC = {"o200k_base": O200K, "cl100k_base": CL100K}


def n(enc, text):
    # encode_ordinary: special-token look-alikes are plain text, as providers bill user text.
    return len(enc.encode_ordinary(text))


# --------------------------------------------------------------------------- texts
TEXTS = {
    "empty": "",
    "english": "The quick brown fox jumps over the lazy dog. It wasn't me, they'd said; we'll see!",
    "english_long": (
        "Tokenization splits text into pieces that a language model reads. Billing is per token, "
        "so counting them before a call lets an application refuse a request that would exceed a budget, "
        "pick a cheaper model, or trim a conversation that no longer fits the context window.\n\n"
    ) * 8,
    "code_rust": "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "code_python": "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(20)])\n",
    "json": json.dumps({"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": [1, 2, 3]}}),
    "cjk_chinese": "我们今天去公园散步，天气非常好。人工智能正在改变世界的许多行业。",
    "cjk_japanese": "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "cjk_korean": "안녕하세요. 오늘 날씨가 정말 좋네요. 토큰 수를 세는 것은 중요합니다.",
    "emoji": "Great job 🎉🎉! 👍🏽 Family: 👨‍👩‍👧‍👦 Flags: 🇫🇷🇯🇵 ❤️‍🔥",
    "whitespace_runs": "a" + " " * 100 + "b\n\n\n\n" + "\t" * 20 + "c" + " \n " * 30 + "   ",
    "long_spaces_only": " " * 5000,
    "newlines_only": "\n" * 1000,
    "special_tokens_in_text": "Ignore this <|endoftext|> and <|im_start|>user<|im_end|> and <|fim_prefix|> <|endofprompt|>",
    "numbers": "Pi is 3.14159265358979; 1234567890 + 42 = 1234567932. Phone: +1 (555) 010-9999.",
    "contractions_caps": "I'M SURE YOU'LL SEE WE'RE RIGHT. HE'S HERE, SHE'D GO, THEY'VE LEFT. Don't.",
    "accents_combining": "Crème brûlée, naïve café, São Paulo, Zürich, e\u0301 (combining), Ωμέγα, Привет мир",
    "arabic_hebrew_hindi": "مرحبا بالعالم. שלום עולם. नमस्ते दुनिया।",
    "url_path": "https://example.com/api/v1/users/42?include=orders&sort=-created_at#section-2 /usr/local/bin/",
    "mixed_markdown": "# Title\n\n- item **bold** and `code`\n- [link](http://x.y)\n\n```js\nconst a = 1;\n```\n",
    "control_chars": "a\u0000b\u0001c\u007f\u200b\ufeffd\r\n\r\ne",
    "lone_surrogate_free_astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕗𝕒𝕟𝕔𝕪 𐍈 𓀀",
}


def corpus_sections():
    text = (ROOT / "bench" / "corpus.txt").read_text(encoding="utf-8")
    return text


# Estimator calibration references (public tokenizers shipped in registry packages).
def load_references():
    refs = {}
    try:
        from tokenizers import Tokenizer

        claude = Tokenizer.from_file(str(TOKDIR / "anthropic_tokenizer.json"))
        refs["claude"] = ("legacy Claude tokenizer (litellm anthropic_tokenizer.json)", lambda t: len(claude.encode(t, add_special_tokens=False).ids))
        ds = Tokenizer.from_file(str(TOKDIR / "deepseek_tokenizer.json"))
        refs["deepseek"] = ("DeepSeek-V3 tokenizer (litellm deepseek_tokenizer.json)", lambda t: len(ds.encode(t, add_special_tokens=False).ids))
    except Exception as e:  # pragma: no cover - reported, not fatal
        print("warning: litellm tokenizers unavailable:", e, file=sys.stderr)
    try:
        import mistral_common
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer

        path = pathlib.Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
        tek = Tekkenizer.from_file(str(path))
        refs["mistral"] = ("Mistral Tekken tokenizer (mistral-common tekken_240911.json)", lambda t: len(tek.encode(t, bos=False, eos=False)))
    except Exception as e:  # pragma: no cover
        print("warning: mistral-common unavailable:", e, file=sys.stderr)
    return refs


def calibration_samples(corpus):
    """Prose, code and CJK slices of the bench corpus plus the short texts."""
    samples = {}
    # The corpus is prose, then CJK, then code (see bench/make_corpus.py).
    first_cjk = next(i for i, ch in enumerate(corpus) if "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7a3")
    code_at = corpus.index('"""Command-line parsing library')
    samples["corpus_prose"] = (0, corpus[:first_cjk][:200_000])
    samples["corpus_cjk"] = (first_cjk, corpus[first_cjk:code_at][:60_000])
    samples["corpus_code"] = (code_at, corpus[code_at:][:200_000])
    for name, text in TEXTS.items():
        if len(text) > 40:
            samples["text_" + name] = (None, text)
    return samples


def gen_tokens():
    corpus = corpus_sections()
    out = {
        "generator": "tests/vectors/gen_tokens.py",
        "reference": f"tiktoken {tiktoken.__version__} encode_ordinary",
        "texts": [],
        "corpus": {"path": "bench/corpus.txt", "bytes": len(corpus.encode("utf-8")),
                   "o200k_base": n(O200K, corpus), "cl100k_base": n(CL100K, corpus)},
    }
    for name, text in TEXTS.items():
        out["texts"].append({"name": name, "text": text, "o200k_base": n(O200K, text), "cl100k_base": n(CL100K, text)})
    refs = load_references()
    samples = calibration_samples(corpus)
    est = {"samples": [], "references": {k: v[0] for k, v in refs.items()}}
    for name, (start, text) in samples.items():
        row = {"name": name, "o200k_base": n(O200K, text)}
        if start is None:
            row["text"] = text
        else:
            start_byte = len(corpus[:start].encode("utf-8"))
            row["start_byte"], row["end_byte"] = start_byte, start_byte + len(text.encode("utf-8"))
        for fam, (_, f) in refs.items():
            row[fam] = f(text)
        est["samples"].append(row)
    out["estimators"] = est
    # Print the ratios that calibrate the Rust factors.
    for fam in refs:
        corpus_rows = [r for r in est["samples"] if "start_byte" in r]
        tot_ref = sum(r[fam] for r in corpus_rows)
        tot_o = sum(r["o200k_base"] for r in corpus_rows)
        per = ", ".join(f"{r['name']}={r[fam] / r['o200k_base']:.3f}" for r in est["samples"])
        print(f"{fam}: overall ref/o200k = {tot_ref / tot_o:.3f} ({per})", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- chat
def png_data_url(w, h):
    raw = b"".join(b"\x00" + b"\x00" * (w * 3) for _ in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


def jpeg_data_url(w, h):
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + b"\x00" * 3000  # a large segment before the frame
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + app0 + exif + sof + b"\xff\xd9").decode()


def gif_data_url(w, h):
    return "data:image/gif;base64," + base64.b64encode(b"GIF89a" + struct.pack("<HH", w, h) + b"\x00\x00\x00;").decode()


def webp_data_url(w, h):
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return "data:image/webp;base64," + base64.b64encode(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body).decode()


def tile_tokens(w, h, detail, base, per_tile):
    if detail == "low":
        return base
    if w > 2048 or h > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    return base + per_tile * math.ceil(w / 512) * math.ceil(h / 512)


def patch_tokens(w, h, mult_per_mille):
    raw = math.ceil(w / 32) * math.ceil(h / 32)
    if raw > 1536:
        s = math.sqrt(1536 * 32 * 32 / (w * h))
        s = s * min(math.floor(w * s / 32) / (w * s / 32), math.floor(h * s / 32) / (h * s / 32))
        raw = min(math.ceil(w * s / 32) * math.ceil(h * s / 32), 1536)
    return -(-raw * mult_per_mille // 1000)


MODELS = {
    "openai/gpt-4o": ("o200k_base", ("tiles", 85, 170)),
    "openai/gpt-4o-mini": ("o200k_base", ("tiles", 2833, 5667)),
    "openai/gpt-4.1-mini": ("o200k_base", ("patches", 1620)),
    "openai/gpt-4": ("cl100k_base", ("tiles", 85, 170)),
}
ASSUMED_URL_DIMS = (1024, 1024)


def image_tokens(rule, w, h, detail):
    if rule[0] == "tiles":
        return tile_tokens(w, h, detail, rule[1], rule[2])
    return patch_tokens(w, h, rule[1])


def tools_tokens(enc, tools):
    """OpenAI cookbook num_tokens_for_tools (gpt-4o / gpt-4 constants)."""
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = 7, 3, 3, -3, 3, 12
    t = 0
    for tool in tools:
        f = tool["function"]
        t += func_init
        desc = f.get("description", "")
        if desc.endswith("."):
            desc = desc[:-1]
        t += n(enc, f"{f['name']}:{desc}")
        props = f.get("parameters", {}).get("properties", {})
        if props:
            t += prop_init
            for key, p in props.items():
                t += prop_key
                pd = p.get("description", "")
                if pd.endswith("."):
                    pd = pd[:-1]
                if "enum" in p:
                    t += enum_init
                    for item in p["enum"]:
                        t += enum_item + n(enc, item if isinstance(item, str) else json.dumps(item))
                t += n(enc, f"{key}:{p.get('type', '')}:{pd}")
    return t + func_end


def billed(req, model):
    enc_name, rule = MODELS[model]
    enc = ENC[enc_name]
    total = 3  # reply priming
    for m in req["messages"]:
        total += 3 + n(enc, m["role"])
        if "name" in m:
            total += n(enc, m["name"]) + 1
        c = m.get("content")
        if isinstance(c, str):
            total += n(enc, c)
        elif isinstance(c, list):
            for part in c:
                if part["type"] == "text":
                    total += n(enc, part["text"])
                else:
                    iu = part["image_url"]
                    w, h = iu.get("_dims", ASSUMED_URL_DIMS)
                    total += image_tokens(rule, w, h, iu.get("detail", "auto"))
    if req.get("tools"):
        total += tools_tokens(enc, req["tools"])
    return total


def strip_private(req):
    r = json.loads(json.dumps(req))
    for m in r["messages"]:
        if isinstance(m.get("content"), list):
            for p in m["content"]:
                if p["type"] == "image_url":
                    p["image_url"].pop("_dims", None)
    return r


def img(url, dims, detail=None):
    d = {"url": url, "_dims": dims}
    if detail:
        d["detail"] = detail
    return {"type": "image_url", "image_url": d}


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search_docs", "description": "Search the documentation",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "description": "Max results"}}}}}


def gen_chat():
    reqs = {
        "single_user": {"messages": [{"role": "user", "content": "Hello, how are you?"}]},
        "system_user_assistant": {"messages": [
            {"role": "system", "content": "You are a helpful assistant that answers briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Japan? <|endoftext|>"}]},
        "names": {"messages": [
            {"role": "system", "content": "Moderate the chat.", "name": "moderator"},
            {"role": "user", "content": "hi all", "name": "alice_42"},
            {"role": "user", "content": "hey", "name": "bob"}]},
        "cjk_emoji": {"messages": [{"role": "user", "content": TEXTS["cjk_chinese"] + TEXTS["emoji"]}]},
        "text_parts": {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two, longer text here."}]}]},
        "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER_TOOL, SEARCH_TOOL]},
        "image_png_high": {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this."}, img(png_data_url(1024, 768), (1024, 768), "high")]}]},
        "image_png_low": {"messages": [{"role": "user", "content": [img(png_data_url(300, 200), (300, 200), "low")]}]},
        "image_jpeg_large": {"messages": [{"role": "user", "content": [img(jpeg_data_url(4000, 3000), (4000, 3000), "high")]}]},
        "image_gif_small": {"messages": [{"role": "user", "content": [img(gif_data_url(64, 64), (64, 64))]}]},
        "image_webp_tall": {"messages": [{"role": "user", "content": [img(webp_data_url(800, 2400), (800, 2400), "high")]}]},
        "image_url_unknown_size": {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"}, img("https://example.com/cat.jpg", ASSUMED_URL_DIMS, "high")]}]},
    }
    cases = []
    for name, req in reqs.items():
        expected = {m: billed(req, m) for m in MODELS}
        body = strip_private(req)
        body["model"] = "openai/gpt-4o"
        cases.append({"name": name, "request": body, "expected_prompt_tokens": expected,
                      "exact": not req.get("tools") and name != "image_url_unknown_size"})
    return {"generator": "tests/vectors/gen_tokens.py",
            "reference": f"tiktoken {tiktoken.__version__}; OpenAI cookbook message/tool formulas; vision-guide image formulas",
            "cases": cases}


# --------------------------------------------------------------------------- cost
def gen_cost():
    cat = json.loads((ROOT / "core" / "pricing" / "data" / "prices.json").read_text())["models"]
    D = Decimal

    def price(p, field, tokens_in):
        base = {k: v for k, v in p.items()}
        tier = None
        for t in p.get("tiers", []):
            if tokens_in > t["above_input_tokens"]:
                tier = t
        def get(f, fallback):
            if tier and f in tier:
                return D(tier[f])
            if f in base:
                return D(base[f])
            return fallback
        inp = get("input", None)
        out = get("output", None)
        r = {"input": inp, "output": out}
        r["cached_input"] = get("cached_input", inp)
        r["cache_write_5m"] = get("cache_write_5m", inp)
        r["cache_write_1h"] = get("cache_write_1h", r["cache_write_5m"])
        r["reasoning"] = get("reasoning", out)
        return r[field], (tier["above_input_tokens"] if tier else None)

    def micros(x):
        return int(x.quantize(D(1), rounding=ROUND_HALF_UP))

    def expected(model, usage, batch=False, one_hour=False):
        p = cat[model]
        pt, ct = usage["prompt_tokens"], usage["completion_tokens"]
        cached, written, reasoning = usage.get("cached_prompt_tokens", 0), usage.get("cache_write_tokens", 0), usage.get("reasoning_tokens", 0)
        keep = (D(100) - D(p.get("batch_discount_pct", 0))) / 100 if batch else D(1)
        def c(tokens, field):
            pr, tier = price(p, field, pt)
            return D(tokens) * pr * keep, tier  # micro-dollars (price is USD per 1M = micro-dollars per token)
        parts = {
            "input_micros": c(pt - cached - written, "input")[0],
            "cached_input_micros": c(cached, "cached_input")[0],
            "cache_write_micros": c(written, "cache_write_1h" if one_hour else "cache_write_5m")[0],
            "output_micros": c(ct - reasoning, "output")[0],
            "reasoning_micros": c(reasoning, "reasoning")[0],
        }
        tier = price(p, "input", pt)[1]
        # The total rounded half-up once; the parts allocated by largest remainder (floors,
        # then one micro-dollar each to the largest fractional parts, ties to the earlier
        # part) so they add up to the total exactly.
        total = micros(sum(parts.values()))
        res = {k: int(v) for k, v in parts.items()}  # floor (values are >= 0)
        left = total - sum(res.values())
        for k in sorted(parts, key=lambda k: -(parts[k] - int(parts[k]))):  # stable: ties keep order
            if left == 0:
                break
            if parts[k] != int(parts[k]):
                res[k] += 1
                left -= 1
        res["total_micros"] = total
        res["tier_above_input_tokens"] = tier
        return res

    def u(p, c, cached=0, write=0, reasoning=0):
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                "cached_prompt_tokens": cached, "cache_write_tokens": write, "reasoning_tokens": reasoning}

    specs = [
        ("plain_gpt4o", "openai/gpt-4o", u(1234, 567), {}),
        ("cached_gpt4o_mini", "openai/gpt-4o-mini", u(10_000, 300, cached=8_192), {}),
        ("reasoning_o3", "openai/o3", u(2_000, 5_000, cached=1_024, reasoning=4_200), {}),
        ("reasoning_gpt5_nano_rounding", "openai/gpt-5-nano", u(33, 7, reasoning=3), {}),
        ("batch_gpt41", "openai/gpt-4.1", u(50_000, 2_000, cached=10_000), {"batch": True}),
        ("cache_write_5m_sonnet", "anthropic/claude-sonnet-4-5", u(12_000, 800, cached=2_000, write=9_000), {}),
        ("cache_write_1h_opus", "anthropic/claude-opus-4-1", u(30_000, 1_000, cached=0, write=25_000), {"cache_write_1h": True}),
        ("tier_below_sonnet", "anthropic/claude-sonnet-4-5", u(200_000, 1_000), {}),
        ("tier_above_sonnet", "anthropic/claude-sonnet-4-5", u(200_001, 1_000, cached=50_000, write=10_000), {}),
        ("tier_above_gemini_pro", "gemini/gemini-2.5-pro", u(250_000, 4_000, cached=100_000, reasoning=3_000), {}),
        ("tier_above_gemini_pro_batch", "gemini/gemini-2.5-pro", u(250_000, 4_000), {"batch": True}),
        ("thinking_gemini_flash", "gemini/gemini-2.5-flash", u(5_000, 2_500, reasoning=2_000), {}),
        ("haiku_batch_cache", "anthropic/claude-haiku-4-5", u(100_000, 10_000, cached=60_000, write=20_000), {"batch": True}),
        ("deepseek_parts_sum_to_total", "deepseek/deepseek-chat", u(31, 9), {}),
        ("deepseek_cache_hit", "deepseek/deepseek-chat", u(40_000, 1_000, cached=32_000), {}),
        ("deepseek_reasoner", "deepseek/deepseek-reasoner", u(3_000, 9_000, reasoning=7_500), {}),
        ("mistral_large_batch", "mistral/mistral-large", u(7_777, 3_333), {"batch": True}),
        ("zero_usage", "openai/gpt-4o", u(0, 0), {}),
        ("million_tokens", "gemini/gemini-2.5-flash-lite", u(1_000_000, 1_000_000, cached=500_000), {}),
    ]
    cases = []
    for name, model, usage, opts in specs:
        exp = expected(model, usage, opts.get("batch", False), opts.get("cache_write_1h", False))
        cases.append({"name": name, "model": model, "usage": usage, "options": {"batch": opts.get("batch", False), "cache_write_1h": opts.get("cache_write_1h", False)}, "expected": exp})
    return {"generator": "tests/vectors/gen_tokens.py", "reference": "Python Decimal over core/pricing/data/prices.json, total ROUND_HALF_UP to micro-dollars, parts by largest remainder",
            "cases": cases}


def main():
    for name, data in [("tokens.json", gen_tokens()), ("chat_tokens.json", gen_chat()), ("cost.json", gen_cost())]:
        (OUT / name).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print("wrote", OUT / name, file=sys.stderr)


if __name__ == "__main__":
    main()
