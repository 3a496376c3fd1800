"""A typed use of the package; the test suite checks it with ``mypy --strict``."""

from __future__ import annotations

import asyncio
from typing import List, Optional

import gaterouter


def ask(client: gaterouter.Client, question: str) -> Optional[str]:
    resp: gaterouter.ChatCompletion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": question}], max_tokens=200
    )
    tokens: int = resp.usage.prompt_tokens + resp.usage.completion_tokens
    micros: int = resp.cost.total_micros if resp.cost is not None else 0
    print(f"{resp.model}: {tokens} tokens, {micros} micro-USD")
    return resp.choices[0].message.content


def stream(client: gaterouter.Client, question: str) -> str:
    parts: List[str] = []
    chunks = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": question}], stream=True)
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def rate(client: gaterouter.Client, resp: gaterouter.ChatCompletion, good: bool) -> Optional[str]:
    """Outcome feedback on a call; ``None`` when usage records are off (no record to rate)."""
    if resp.usage_record_id is None:
        return None
    feedback_id: str = client.feedback(resp.usage_record_id, 1.0 if good else 0.0, label="thumbs_up" if good else "thumbs_down", tags={"surface": "chat"})
    return feedback_id


async def ask_async(client: gaterouter.AsyncClient) -> int:
    resp = await client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    return resp.usage.total_tokens


def main() -> None:
    try:
        with gaterouter.Client() as client:
            print(ask(client, "What is 2+2?"))
            print(stream(client, "Count to three."))
        print(asyncio.run(ask_async(gaterouter.AsyncClient())))
    except gaterouter.RateLimitError as e:
        print("slow down for", e.retry_after, "seconds")
    except gaterouter.GateRouterError as e:
        print(e.code, e)
    print(gaterouter.count_tokens("hello world", model="openai/gpt-4o"))


if __name__ == "__main__":
    main()
