"""GateRouter from Python against the provider emulator: chat, stream, `auto` with its
explanation, tools, and flush.

    cargo run -p gaterouter-emulator -- --listen 127.0.0.1:8080 &
    pip install ./python
    GATEROUTER_EMULATOR_URL=http://127.0.0.1:8080 python examples/python/quickstart.py
"""
import json
import os

import gaterouter

BASE = os.environ.get("GATEROUTER_EMULATOR_URL", "http://127.0.0.1:8080").rstrip("/")
client = gaterouter.Client({"providers": {
    "openai": {"base_url": f"{BASE}/openai/v1", "api_key": "emulator-key"},
    "anthropic": {"base_url": f"{BASE}/anthropic", "api_key": "emulator-key"},
    "gemini": {"base_url": f"{BASE}/gemini/v1beta", "api_key": "emulator-key"},
    "deepseek": {"base_url": f"{BASE}/deepseek/v1", "api_key": "emulator-key"},
}})

# 1. Chat: one call, cost in integer micro-dollars.
resp = client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "Say hi"}])
print("chat:", resp.choices[0].message.content, f"({resp.usage.total_tokens} tokens, {resp.cost.total_micros} micro-USD)")
assert resp.choices[0].message.content

# 2. Stream: the last chunk carries usage and cost.
parts, last = [], None
for chunk in client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "Count to 3"}], stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    last = chunk
print("stream:", "".join(parts), f"({last.usage.completion_tokens} completion tokens)")
assert parts and last.usage is not None

# 3. auto: the decision explained before calling, then the call.
messages = [{"role": "user", "content": "Prove that sqrt(2) is irrational."}]
decision = client.route(model="auto", messages=messages)
print("route:", decision.chosen, decision.tier, f"score {decision.score:.3f}:", decision.reason)
resp = client.chat.completions.create(model="auto", messages=messages)
print("auto answered by", resp.route.chosen)

# 4. Tools: the model asks for a call, we answer, it finishes.
weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
msgs = [{"role": "user", "content": "Weather in Paris?"}]
first = client.chat.completions.create(model="openai/gpt-4o-mini", messages=msgs, tools=[weather])
calls = first.choices[0].message.tool_calls or []
print("tools: the model called", [c.function.name for c in calls])
if calls:
    msgs.append(first.choices[0].message.to_dict())
    msgs.append({"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps({"celsius": 18})})
    second = client.chat.completions.create(model="openai/gpt-4o-mini", messages=msgs, tools=[weather])
    print("tools: final answer:", second.choices[0].message.content)

# 5. Flush: wait until every usage record is delivered to the collector. Without a
#    [reporting] section (as here) there are no records and it returns at once.
#    The delivery report counts delivered, pending and refused records (with reasons).
report = client.flush(timeout=5.0)
print(f"flush: drained={report.drained} delivered={report.delivered} pending={report.pending} refused={report.refused}")
assert report.refused == 0, report.last_refusal
client.close()
print("python example: ok")
