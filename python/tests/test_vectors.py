"""The shared JSON vectors (tests/vectors/) give the same results in Python as in Rust."""

from __future__ import annotations

import json

import pytest

import gaterouter
from gaterouter import _native

from conftest import VECTORS

ENCODING_MODEL = {"o200k_base": "openai/gpt-4o", "cl100k_base": "openai/gpt-4"}


def load(name: str):
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", load("tokens.json")["texts"], ids=lambda c: c["name"])
def test_token_counts(case):
    for encoding, model in ENCODING_MODEL.items():
        assert gaterouter.count_tokens(case["text"], model=model) == case[encoding], encoding


@pytest.mark.parametrize("case", load("chat_tokens.json")["cases"], ids=lambda c: c["name"])
def test_chat_prompt_tokens(case):
    req = dict(case["request"])
    messages = req.pop("messages")
    req.pop("model", None)
    for model, expected in case["expected_prompt_tokens"].items():
        assert gaterouter.count_tokens(messages, model=model, **req) == expected, model


@pytest.mark.parametrize("case", load("cost.json")["cases"], ids=lambda c: c["name"])
def test_costs(case):
    c = gaterouter.cost(case["usage"], model=case["model"], **case["options"])
    for field, expected in case["expected"].items():
        assert c.to_dict().get(field) == expected, field


@pytest.mark.parametrize("case", load("routing.json")["cases"], ids=lambda c: c["name"])
def test_routing_scores(emulator, case):
    vectors = load("routing.json")
    client = gaterouter.Client(emulator.config())
    req = dict(case["request"])
    decision = client.route(**req)
    assert decision.score == pytest.approx(case["score"], abs=vectors.get("tolerance", 1e-6))
    assert decision.tier == case["tier"]


def test_routing_weights_version(emulator):
    """An auto decision names the weights that scored it: with the default config, the
    builtin ones (tests/vectors/routing_weights_version.json, checked against the core by
    bindings/ffi/tests/shim.rs); the response's route says the same."""
    builtin = load("routing_weights_version.json")["builtin_weights_version"]
    messages = [{"role": "user", "content": "Hi! How are you today?"}]
    with gaterouter.Client(emulator.config()) as client:
        decision = client.route(messages=messages)
        assert decision.weights_version == builtin
        assert "learning" not in decision.to_dict()  # no organization learning
        explicit = client.route(model="openai/gpt-4o-mini", messages=messages).to_dict()
        assert "weights_version" not in explicit and "learning" not in explicit
        resp = client.chat.completions.create(model="auto", messages=messages)
        assert resp.route is not None and resp.route.weights_version == builtin
    # [policy] weights_public_key passes through to the core (without a collector there is
    # no policy, so the builtin weights still score).
    pinned = emulator.config(policy={"weights_public_key": load("records.json")["public_key"]})
    with gaterouter.Client(pinned) as client:
        assert client.route(messages=messages).weights_version == builtin


def test_record_canonical_bytes_and_signatures():
    v = load("records.json")
    for case in v["vectors"]:
        canonical, signature = _native.sign_record(json.dumps(case["record"]), v["seed_base64"])
        assert canonical == case["canonical"], case["name"]
        assert signature == case["signature"], case["name"]
    # The PEM form of the same key signs identically.
    canonical, signature = _native.sign_record(json.dumps(v["vectors"][0]["record"]), v["private_key_pem"])
    assert signature == v["vectors"][0]["signature"]
