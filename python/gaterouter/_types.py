"""Response objects in the OpenAI SDK's shape, built from the core's JSON.

Attribute access (``resp.choices[0].message.content``), plus ``to_dict()`` for the raw
data. The classes are deliberately small: the Rust core owns every field's meaning.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "FunctionCall",
    "ToolCall",
    "ChatCompletionMessage",
    "Choice",
    "Usage",
    "ChatCompletion",
    "FunctionCallDelta",
    "ToolCallDelta",
    "ChoiceDelta",
    "ChunkChoice",
    "ChatCompletionChunk",
    "Record",
]


class _Model:
    """Base: keeps the raw dict for ``to_dict()`` and a readable ``repr``."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Dict[str, Any]) -> None:
        self._raw = raw

    def to_dict(self) -> Dict[str, Any]:
        """The object as plain JSON-compatible data."""
        return self._raw

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__ if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Model) and type(other) is type(self) and other._raw == self._raw


class Record(_Model):
    """Attribute access over nested JSON data (costs, routing decisions, estimates).

    ``rec.total_micros``, ``rec.candidates[0].model``; ``rec.to_dict()`` for the raw data.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self._raw[name])
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {', '.join(self._raw)}") from None

    def __getitem__(self, name: str) -> Any:
        return _wrap(self._raw[name])

    def __repr__(self) -> str:
        return f"Record({self._raw!r})"


def _wrap(v: Any) -> Any:
    if isinstance(v, dict):
        return Record(v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


class FunctionCall(_Model):
    __slots__ = ("name", "arguments")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.name: str = raw.get("name", "")
        self.arguments: str = raw.get("arguments", "")


class ToolCall(_Model):
    __slots__ = ("id", "type", "function")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.id: str = raw.get("id", "")
        self.type: str = raw.get("type", "function")
        self.function = FunctionCall(raw.get("function") or {})


class ChatCompletionMessage(_Model):
    __slots__ = ("role", "content", "tool_calls", "reasoning_content", "refusal")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.role: str = raw.get("role", "assistant")
        self.content: Optional[str] = raw.get("content")
        self.tool_calls: Optional[List[ToolCall]] = [ToolCall(t) for t in raw["tool_calls"]] if raw.get("tool_calls") else None
        self.reasoning_content: Optional[str] = raw.get("reasoning_content")
        self.refusal: Optional[str] = raw.get("refusal")


class Choice(_Model):
    __slots__ = ("index", "message", "finish_reason")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.index: int = raw.get("index", 0)
        self.message = ChatCompletionMessage(raw.get("message") or {})
        self.finish_reason: str = raw.get("finish_reason", "stop")


class Usage(_Model):
    """Token usage. ``prompt_tokens`` includes cached and cache-write tokens;
    ``completion_tokens`` includes reasoning tokens (OpenAI's convention, for every provider)."""

    __slots__ = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_prompt_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    )

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.prompt_tokens: int = raw.get("prompt_tokens", 0)
        self.completion_tokens: int = raw.get("completion_tokens", 0)
        self.total_tokens: int = raw.get("total_tokens", 0)
        self.cached_prompt_tokens: int = raw.get("cached_prompt_tokens", 0)
        self.cache_write_tokens: int = raw.get("cache_write_tokens", 0)
        self.reasoning_tokens: int = raw.get("reasoning_tokens", 0)


class ChatCompletion(_Model):
    __slots__ = ("id", "object", "created", "model", "choices", "usage", "cost", "route", "usage_record_id", "shadow", "shadow_error")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.id: str = raw.get("id", "")
        self.object: str = raw.get("object", "chat.completion")
        self.created: int = raw.get("created", 0)
        self.model: str = raw.get("model", "")
        self.choices: List[Choice] = [Choice(c) for c in raw.get("choices", [])]
        self.usage = Usage(raw.get("usage") or {})
        self.cost: Optional[Record] = Record(raw["cost"]) if raw.get("cost") else None
        """What the call cost (integer micro-dollars: ``cost.total_micros``), when priced."""
        self.route: Optional[Record] = Record(raw["route"]) if raw.get("route") else None
        """The routing decision: score, tier, features, candidates, excluded, attempts;
        ``weights_version`` and ``learning`` as :meth:`Client.route` describes."""
        self.usage_record_id: Optional[str] = raw.get("usage_record_id")
        """Id of the call's usage record (``None`` when usage records are off): pass it to
        ``client.feedback(...)`` to say how good the answer was."""
        self.shadow: Optional[ChatCompletion] = ChatCompletion(raw["shadow"]) if raw.get("shadow") else None
        """Shadow sampling (an ``auto`` call of an organization that turned it on): the
        same request's answer from the other arm (the heavy tier if this one is lighter,
        else a lighter one), with its own ``cost``, ``route`` (``route.shadow_of`` names
        this call's record) and ``usage_record_id`` for your evaluator to rate beside this
        one. ``None`` otherwise, or when the shadow call failed (its usage record says how)."""
        self.shadow_error: Optional[Record] = Record(raw["shadow_error"]) if raw.get("shadow_error") else None
        """The shadow call was drawn but failed: its ``code`` and ``message``. ``None``
        otherwise."""


class FunctionCallDelta(_Model):
    __slots__ = ("name", "arguments")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.name: Optional[str] = raw.get("name")
        self.arguments: Optional[str] = raw.get("arguments")


class ToolCallDelta(_Model):
    __slots__ = ("index", "id", "type", "function")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.index: int = raw.get("index", 0)
        self.id: Optional[str] = raw.get("id")
        self.type: Optional[str] = raw.get("type")
        self.function = FunctionCallDelta(raw.get("function") or {})


class ChoiceDelta(_Model):
    __slots__ = ("role", "content", "reasoning_content", "tool_calls")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.role: Optional[str] = raw.get("role")
        self.content: Optional[str] = raw.get("content")
        self.reasoning_content: Optional[str] = raw.get("reasoning_content")
        self.tool_calls: Optional[List[ToolCallDelta]] = [ToolCallDelta(t) for t in raw["tool_calls"]] if raw.get("tool_calls") else None


class ChunkChoice(_Model):
    __slots__ = ("index", "delta", "finish_reason")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.index: int = raw.get("index", 0)
        self.delta = ChoiceDelta(raw.get("delta") or {})
        self.finish_reason: Optional[str] = raw.get("finish_reason")


class ChatCompletionChunk(_Model):
    """A stream chunk. The last chunk of a stream has no choices and carries ``usage``
    (and ``usage_record_id``)."""

    __slots__ = ("id", "object", "created", "model", "choices", "usage", "cost", "usage_record_id")

    def __init__(self, raw: Dict[str, Any]) -> None:
        super().__init__(raw)
        self.id: str = raw.get("id", "")
        self.object: str = raw.get("object", "chat.completion.chunk")
        self.created: int = raw.get("created", 0)
        self.model: str = raw.get("model", "")
        self.choices: List[ChunkChoice] = [ChunkChoice(c) for c in raw.get("choices", [])]
        self.usage: Optional[Usage] = Usage(raw["usage"]) if raw.get("usage") else None
        self.cost: Optional[Record] = Record(raw["cost"]) if raw.get("cost") else None
        self.usage_record_id: Optional[str] = raw.get("usage_record_id")
        """On the chunk that carries ``usage``: id of the call's usage record (``None`` when
        usage records are off), for ``client.feedback(...)``."""
