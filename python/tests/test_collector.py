"""Usage records from Python calls reach a real collector (the `gaterouter-collector`
binary on SQLite), one per call, with the call's tokens and cost; threads and asyncio
lose none."""

from __future__ import annotations

import asyncio
import concurrent.futures
import collections
import uuid
from typing import Any, Dict

import gaterouter

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "deepseek/deepseek-chat"]


def _by_call(records: Any) -> Dict[str, Dict[str, Any]]:
    """Records keyed by their ``call`` tag; fails on a call stored twice."""
    counts = collections.Counter(r["tag"]["call"] for r in records)
    dup = {k: n for k, n in counts.items() if n > 1}
    assert not dup, f"calls stored more than once: {dup}"
    assert len({r["id"] for r in records}) == len(records)
    return {r["tag"]["call"]: r for r in records}


def _assert_matches(rec: Dict[str, Any], model: str, usage: Any, cost: Any, stream: bool) -> None:
    provider, name = model.split("/", 1)
    assert (rec["provider"], rec["model"]) == (provider, name)
    assert rec["prompt_tokens"] == usage.prompt_tokens
    assert rec["completion_tokens"] == usage.completion_tokens
    assert rec["total_tokens"] == usage.total_tokens
    assert cost is not None and rec["client_cost_micros"] == cost.total_micros
    # The collector prices the record itself and agrees with the client.
    assert rec["collector_cost_micros"] == cost.total_micros and rec["cost_mismatch"] == 0
    assert rec["stream"] == int(stream) and rec["is_error"] == 0
    assert (rec["org"], rec["usr"], rec["api_key_id"]) == ("acme", "py-user", "k_py")
    assert (rec["sdk_name"], rec["sdk_language"]) == ("gaterouter-python", "python")


def test_sync_stream_and_async_calls_each_store_one_record(emulator, collector):
    run = uuid.uuid4().hex
    expected: Dict[str, Any] = {}
    with gaterouter.Client(collector.config(emulator)) as client:
        for i, model in enumerate(MODELS):
            call = f"chat-{i}"
            r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hello {i}"}], metadata={"run": run, "call": call})
            expected[call] = (model, r.usage, r.cost, False)
        for i, model in enumerate(MODELS):
            call = f"stream-{i}"
            s = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"a story {i}"}], stream=True, metadata={"run": run, "call": call}
            )
            for _ in s:
                pass
            expected[call] = (model, s.usage, s.cost, True)
        assert client.flush(timeout=20).all_delivered

    async def async_calls() -> None:
        async with gaterouter.AsyncClient(collector.config(emulator)) as client:
            for i, model in enumerate(MODELS):
                call = f"async-{i}"
                r = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"async {i}"}], metadata={"run": run, "call": call})
                expected[call] = (model, r.usage, r.cost, False)
                call = f"async-stream-{i}"
                s = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": f"async story {i}"}], stream=True, metadata={"run": run, "call": call}
                )
                async for _ in s:
                    pass
                expected[call] = (model, s.usage, s.cost, True)
            assert (await client.flush(timeout=20)).all_delivered

    asyncio.run(async_calls())

    stored = _by_call(collector.records(run))
    assert sorted(stored) == sorted(expected)
    for call, (model, usage, cost, stream) in expected.items():
        _assert_matches(stored[call], model, usage, cost, stream)


def test_threads_lose_no_record(emulator, collector):
    run = uuid.uuid4().hex
    client = gaterouter.Client(collector.config(emulator))

    def worker(t: int) -> Dict[str, Any]:
        out = {}
        for i in range(50):
            call = f"{t}-{i}"
            model = MODELS[(t + i) % len(MODELS)]
            r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": call}], metadata={"run": run, "call": call})
            assert call in r.choices[0].message.content
            out[call] = (model, r.usage, r.cost)
        return out

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [f.result() for f in [pool.submit(worker, t) for t in range(8)]]
    assert client.flush(timeout=30).all_delivered
    client.close()

    expected = {k: v for part in results for k, v in part.items()}
    stored = _by_call(collector.records(run))
    assert len(stored) == len(expected) == 400
    for call, (model, usage, cost) in expected.items():
        rec = stored[call]
        assert rec["model"] == model.split("/", 1)[1]
        assert (rec["prompt_tokens"], rec["completion_tokens"], rec["client_cost_micros"]) == (usage.prompt_tokens, usage.completion_tokens, cost.total_micros)


def test_asyncio_loses_no_record(emulator, collector):
    run = uuid.uuid4().hex

    async def main() -> Dict[str, Any]:
        async with gaterouter.AsyncClient(collector.config(emulator)) as client:

            async def call(i: int) -> Any:
                model = MODELS[i % len(MODELS)]
                r = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"t{i}"}], metadata={"run": run, "call": str(i)})
                return str(i), (model, r.usage, r.cost)

            pairs = await asyncio.gather(*(call(i) for i in range(200)))
            assert (await client.flush(timeout=30)).all_delivered
            return dict(pairs)

    expected = asyncio.run(main())
    stored = _by_call(collector.records(run))
    assert len(stored) == len(expected) == 200
    for call, (model, usage, cost) in expected.items():
        rec = stored[call]
        assert (rec["prompt_tokens"], rec["completion_tokens"], rec["client_cost_micros"]) == (usage.prompt_tokens, usage.completion_tokens, cost.total_micros)
