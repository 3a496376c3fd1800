"""Routing decisions, costs and estimates through the Python client."""

from __future__ import annotations

import gaterouter


def test_auto_route_explains(emulator):
    client = gaterouter.Client(emulator.config())
    d = client.route(messages=[{"role": "user", "content": "Prove step by step that sqrt(2) is irrational."}])
    assert d.mode == "auto" and d.tier in ("light", "standard", "heavy")
    assert d.chosen == d.candidates[0].model
    assert any(e.model.startswith("mistral/") and "MISTRAL_API_KEY" in e.reason for e in d.excluded)
    assert len(d.features) > 5


def test_every_response_carries_cost_and_route(emulator):
    client = gaterouter.Client(emulator.config())
    resp = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Say hi"}])
    assert resp.route is not None and resp.route.attempts[-1].outcome == "ok"
    assert resp.model == resp.route.chosen
    assert resp.cost is not None and resp.cost.total_micros > 0
    expected = gaterouter.cost(resp.usage, model=resp.model)
    assert resp.cost.total_micros == expected.total_micros
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True)
    for _ in stream:
        pass
    assert stream.cost is not None and stream.cost.total_micros > 0


def test_estimates_before_the_call(emulator):
    client = gaterouter.Client(emulator.config())
    msgs = [{"role": "user", "content": "Summarize the plot of Hamlet."}]
    est = client.estimate_cost(model="openai/gpt-4o", messages=msgs, max_tokens=100)
    assert 0 < est.expected.total_micros <= est.max.total_micros
    assert est.max_completion_tokens == 100
    assert client.count_tokens(model="openai/gpt-4o", messages=msgs).tokens == gaterouter.count_tokens(msgs, model="openai/gpt-4o")
    module_level = gaterouter.estimate_cost(model="openai/gpt-4o", messages=msgs, max_tokens=100)
    assert module_level.max.total_micros == est.max.total_micros


def test_special_tokens_in_user_text_are_plain_text():
    assert gaterouter.count_tokens("<|endoftext|>", model="openai/gpt-4o") > 1
