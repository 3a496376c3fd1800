"""Chat, streaming, async and errors through the Python package against the emulator."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

import gaterouter

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "deepseek/deepseek-chat"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def client(emulator):
    with gaterouter.Client(emulator.config()) as c:
        yield c


@pytest.mark.parametrize("model", MODELS)
def test_chat_openai_shape(client, model):
    resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Why is the sky blue?"}])
    assert isinstance(resp, gaterouter.ChatCompletion)
    assert resp.model == model
    assert "Why is the sky blue?" in resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_stream_ends_with_usage(client, model):
    whole = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell a fox story"}])
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell a fox story"}], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert stream.usage is not None and stream.usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_round_trip(client, model):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    # The response message object is accepted back as a message.
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
async def test_async_chat_and_stream(emulator, model):
    async with gaterouter.AsyncClient(emulator.config()) as client:
        resp = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert "hi" in resp.choices[0].message.content
        stream = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = [c async for c in stream]
        assert chunks[-1].usage is not None
        assert stream.usage is not None


@pytest.mark.parametrize(
    "fault,exc",
    [
        ("rate_limit", gaterouter.RateLimitError),
        ("auth", gaterouter.AuthenticationError),
        ("server_error", gaterouter.ProviderUnavailableError),
        ("context_length", gaterouter.ContextLengthExceededError),
        ("bad_request", gaterouter.InvalidRequestError),
        ("malformed_json", gaterouter.InvalidResponseError),
    ],
)
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_errors_are_typed(emulator, provider, fault, exc):
    client = gaterouter.Client(emulator.config(retry={"max_retries": 0}))
    emulator.fault(fault=fault, provider=provider, times=1, retry_after=2)
    model = {"openai": "openai/gpt-4o", "anthropic": "anthropic/claude-haiku-4-5", "gemini": "gemini/gemini-2.5-pro"}[provider]
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    err = info.value
    assert isinstance(err, gaterouter.GateRouterError)
    assert err.code and err.provider == provider
    if fault == "rate_limit":
        assert err.retry_after == pytest.approx(2.0)
        assert err.status_code == 429


def test_cut_stream_raises_stream_interrupted(emulator):
    client = gaterouter.Client(emulator.config())
    emulator.fault(fault="cut_stream", provider="anthropic", after_events=2, times=1)
    stream = client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(gaterouter.StreamInterruptedError):
        for _ in stream:
            pass


def test_timeout_is_typed(emulator):
    client = gaterouter.Client(emulator.config(timeouts={"request_ms": 300}, retry={"max_retries": 0}))
    emulator.fault(fault="slow", provider="openai", delay_ms=2000, times=1)
    with pytest.raises(gaterouter.APITimeoutError):
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_bad_input_names_the_field(client):
    with pytest.raises(gaterouter.InvalidRequestError, match="messages"):
        client.chat.completions.create(model="openai/gpt-4o", messages=[])
    with pytest.raises(gaterouter.InvalidRequestError, match="temperature"):
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=7)
    with pytest.raises(gaterouter.InvalidRequestError, match="provider/model"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(gaterouter.InvalidRequestError, match="nme"):
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x", "nme": "typo"}])


def test_config_errors(tmp_path):
    with pytest.raises(gaterouter.ConfigError, match="request_msec"):
        gaterouter.Client({"timeouts": {"request_msec": 5}})
    bad = tmp_path / "gr.toml"
    bad.write_text('[providers.vllm]\nkind = "openai"\nbase_url = "not a url"\n')
    with pytest.raises(gaterouter.ConfigError, match="providers.vllm.base_url"):
        gaterouter.Client(config_file=bad)


def test_threads_share_one_client(client):
    def call(i: int) -> str:
        return client.chat.completions.create(model=MODELS[i % 4], messages=[{"role": "user", "content": f"n{i}"}]).choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8 * 50)))
    assert all(f"n{i}" in r for i, r in enumerate(results))


async def test_many_concurrent_tasks(emulator):
    client = gaterouter.AsyncClient(emulator.config())

    async def call(i: int) -> str:
        r = await client.chat.completions.create(model=MODELS[i % 4], messages=[{"role": "user", "content": f"t{i}"}])
        return r.choices[0].message.content

    results = await asyncio.gather(*(call(i) for i in range(200)))
    assert all(f"t{i}" in r for i, r in enumerate(results))


async def test_cancelling_a_task_does_not_break_the_client(emulator):
    client = gaterouter.AsyncClient(emulator.config())
    emulator.fault(fault="slow", provider="openai", delay_ms=3000, times=1)
    task = asyncio.ensure_future(client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}]))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    r = await client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "after"}])
    assert "after" in r.choices[0].message.content


def test_close_cuts_calls_in_flight_refuses_later_ones_and_returns_the_report(emulator):
    import threading
    import time

    client = gaterouter.Client(emulator.config())
    emulator.fault(fault="slow", provider="deepseek", delay_ms=3000, times=1)
    failed = []

    def call() -> None:
        try:
            client.chat.completions.create(model="deepseek/deepseek-chat", messages=[{"role": "user", "content": "x"}])
        except gaterouter.GateRouterError as e:
            failed.append(e)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    report = client.close(grace=0.1)
    t.join(5)
    assert time.monotonic() - started < 2, "the slow call was cut after the grace"
    assert [e.code for e in failed] == ["CLIENT_CLOSED"]
    assert isinstance(failed[0], gaterouter.ClientClosedError)
    assert report.drained
    with pytest.raises(gaterouter.ClientClosedError) as refused:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "after"}])
    assert refused.value.code == "CLIENT_CLOSED"
    assert client.close().drained  # idempotent
