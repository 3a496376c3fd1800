"""``Client`` and ``AsyncClient``: the OpenAI SDK's shape over the Rust core.

Requests cross into Rust as JSON text and responses come back the same way, so the
core's serde types are the one definition of every field; this module only builds the
request dict and wraps the answer in attribute-access objects.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Generic, Iterable, Iterator, List, Literal, Mapping, Optional, TypeVar, Union, overload


import gaterouter._native as _native
from ._delivery import DeliveryReport, _surface_refusals
from ._types import ChatCompletion, ChatCompletionChunk, Record, Usage, _Model

if TYPE_CHECKING:
    import asyncio
# `asyncio` is imported where it is used, not here: it is most of the import time of the
# package (~60% measured), and sync users never need it. An async caller has it loaded already.

__all__ = ["Client", "AsyncClient", "Stream", "AsyncStream", "count_tokens", "estimate_cost", "cost"]

Message = Mapping[str, Any]
FeedbackSource = Literal["user", "evaluator", "implicit"]
"""Who judged a call's answer (``client.feedback(..., source=...)``)."""
PathLike = Union[str, "os.PathLike[str]"]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, _Model):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):  # pydantic objects, e.g. from the openai SDK
        return obj.model_dump(exclude_none=True)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable: pass dicts, lists, strings and numbers")


def _request_json(model: str, messages: Iterable[Any], params: Dict[str, Any]) -> str:
    body: Dict[str, Any] = {"model": model, "messages": list(messages)}
    for key, value in params.items():
        if value is not None:
            body[key] = value
    return json.dumps(body, default=_jsonable, ensure_ascii=False)


_CREATE_PARAMS = ("tools", "tool_choice", "temperature", "top_p", "stop", "response_format", "seed", "user", "metadata")


def _create_params(args: Dict[str, Any]) -> Dict[str, Any]:
    """The request fields of ``create(...)``'s arguments (``max_completion_tokens`` is an
    alias of ``max_tokens``)."""
    params = {k: args[k] for k in _CREATE_PARAMS}
    params["max_tokens"] = args["max_tokens"] if args["max_tokens"] is not None else args["max_completion_tokens"]
    return params


def _native_client(config: Optional[Mapping[str, Any]], config_file: Optional[PathLike]) -> "_native.NativeClient":
    config_json = json.dumps(config, default=_jsonable) if config is not None else None
    return _native.NativeClient(config_json, os.fspath(config_file) if config_file is not None else None)


class Stream(Iterator[ChatCompletionChunk]):
    """Iterator of chunks; ``usage`` (and ``cost``, ``usage_record_id``) hold the final
    chunk's values once the stream has ended."""

    def __init__(self, native: "_native.NativeStream") -> None:
        self._native = native
        self.usage: Optional[Usage] = None
        self.cost: Optional[Record] = None
        self.usage_record_id: Optional[str] = None

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> ChatCompletionChunk:
        raw = self._native.next()
        if raw is None:
            raise StopIteration
        chunk = ChatCompletionChunk(json.loads(raw))
        if chunk.usage is not None:
            self.usage = chunk.usage
            self.cost = chunk.cost
            self.usage_record_id = chunk.usage_record_id
        return chunk

    def close(self) -> None:
        """Stop reading and drop the connection."""
        self._native.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    """Called on the event loop (``call_soon_threadsafe``) when Rust has the result."""
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


async def _await_native(start: Any) -> Any:
    """Run a native async call: ``start(loop, done)`` returns a cancellable handle."""
    import asyncio

    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[Any]" = loop.create_future()
    handle = start(loop, lambda ok, value: _settle(fut, ok, value))
    try:
        return await fut
    except asyncio.CancelledError:
        handle.cancel()
        raise


class AsyncStream(AsyncIterator[ChatCompletionChunk]):
    """Async iterator of chunks; ``usage`` (and ``cost``, ``usage_record_id``) hold the
    final chunk's values once it has ended."""

    def __init__(self, native: "_native.NativeStream") -> None:
        self._native = native
        self.usage: Optional[Usage] = None
        self.cost: Optional[Record] = None
        self.usage_record_id: Optional[str] = None

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        raw = await _await_native(self._native.next_async)
        if raw is None:
            raise StopAsyncIteration
        chunk = ChatCompletionChunk(json.loads(raw))
        if chunk.usage is not None:
            self.usage = chunk.usage
            self.cost = chunk.cost
            self.usage_record_id = chunk.usage_record_id
        return chunk

    async def close(self) -> None:
        """Stop reading and drop the connection."""
        self._native.close()


class Completions:
    """``client.chat.completions``."""

    def __init__(self, native: "_native.NativeClient") -> None:
        self._native = native

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[Message],
        stream: Literal[False] = False,
        tools: Optional[List[Mapping[str, Any]]] = None,
        tool_choice: Optional[Union[str, Mapping[str, Any]]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> ChatCompletion: ...
    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[Message],
        stream: Literal[True],
        tools: Optional[List[Mapping[str, Any]]] = None,
        tool_choice: Optional[Union[str, Mapping[str, Any]]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> Stream: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[Message],
        stream: bool = False,
        tools: Optional[List[Mapping[str, Any]]] = None,
        tool_choice: Optional[Union[str, Mapping[str, Any]]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> Union[ChatCompletion, Stream]:
        """Create a chat completion; with ``stream=True`` return an iterator of chunks."""
        req = _request_json(model, messages, _create_params(locals()))
        if stream:
            return Stream(self._native.stream(req))
        out = ChatCompletion(json.loads(self._native.chat(req)))
        _surface_refusals(self._native)
        return out


class AsyncCompletions:
    """``async_client.chat.completions``."""

    def __init__(self, native: "_native.NativeClient") -> None:
        self._native = native

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Message],
        stream: Literal[False] = False,
        tools: Optional[List[Mapping[str, Any]]] = None,
        tool_choice: Optional[Union[str, Mapping[str, Any]]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> ChatCompletion: ...
    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Message],
        stream: Literal[True],
        tools: Optional[List[Mapping[str, Any]]] = None,
        tool_choice: Optional[Union[str, Mapping[str, Any]]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> AsyncStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Message],
        stream: bool = False,
        tools: Optional[List[Mapping[str, Any]]] = None,
        tool_choice: Optional[Union[str, Mapping[str, Any]]] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> Union[ChatCompletion, AsyncStream]:
        """Create a chat completion without blocking the event loop."""
        req = _request_json(model, messages, _create_params(locals()))
        if stream:
            return AsyncStream(self._native.stream_lazy(req))
        raw = await _await_native(lambda loop, done: self._native.chat_async(req, loop, done))
        _surface_refusals(self._native)
        return ChatCompletion(json.loads(raw))


_C = TypeVar("_C")


class _Chat(Generic[_C]):
    """``client.chat``: holds ``completions``."""

    def __init__(self, completions: _C) -> None:
        self.completions: _C = completions


class Client:
    """Synchronous client. ``config`` is a dict in the TOML config's structure;
    ``config_file`` a path to a TOML file; neither means built-in defaults (keys from the
    environment). Network waits release the GIL; Ctrl-C interrupts a blocking call."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None, *, config_file: Optional[PathLike] = None) -> None:
        self._native = _native_client(config, config_file)
        # With an organization policy: learn the key's binding now, so a wrong
        # [identity] value raises ConfigError here rather than at the first call.
        self._native.ready()
        self.chat = _Chat(Completions(self._native))

    def route(self, *, model: str = "auto", messages: Iterable[Message], **params: Any) -> Record:
        """Where a request would go, and why, without calling anything.

        Fields as the core serializes them: ``mode``, ``chosen``, ``candidates``, ``reason``...;
        for ``auto`` also ``score``, ``tier``, ``features``, ``weights_version`` (16 hex
        digits naming the router weights that scored it: the builtin ones, a weights
        file's, or the organization's learned ones) and, when the organization learns from
        outcomes, ``learning`` (``explored``, ``propensity``, ``model_explored``,
        ``model_propensity``, ``scored_tier``). Fields that
        do not apply are absent (``rec.to_dict().get(name)``)."""
        return Record(json.loads(self._native.route(_request_json(model, messages, params))))

    def count_tokens(self, *, model: str = "auto", messages: Iterable[Message], **params: Any) -> Record:
        """Prompt tokens as the model (``auto``: the routed model) bills them: ``.tokens``, ``.exact``."""
        return Record(json.loads(self._native.count_tokens(_request_json(model, messages, params))))

    def estimate_cost(self, *, model: str = "auto", messages: Iterable[Message], **params: Any) -> Record:
        """Cost before the call: ``.expected.total_micros`` and ``.max.total_micros``."""
        return Record(json.loads(self._native.estimate_cost(_request_json(model, messages, params))))

    def flush(self, timeout: float = 10.0) -> DeliveryReport:
        """Wait up to ``timeout`` seconds until every usage record so far is resolved by the
        collector, and report delivered / pending / refused counts. ``drained`` counts
        refused records as resolved: check ``refused`` (or ``all_delivered``). Refusal
        reasons seen for the first time are warned about (``UsageRefusedWarning`` and the
        ``gaterouter`` logger)."""
        report = DeliveryReport._from_json(self._native.flush(timeout))
        _surface_refusals(self._native)
        return report

    def usage_status(self) -> DeliveryReport:
        """The same report as :meth:`flush`, now, without waiting."""
        report = DeliveryReport._from_json(self._native.usage_status())
        _surface_refusals(self._native)
        return report

    def feedback(
        self,
        record_id: str,
        score: float,
        *,
        label: Optional[str] = None,
        source: FeedbackSource = "user",
        tags: Optional[Mapping[str, str]] = None,
    ) -> str:
        """Say how good a call's answer was. ``record_id`` is the call's
        ``usage_record_id`` (on the response, and on a stream's last chunk); ``score`` goes
        from 0.0 (useless) to 1.0 (right). ``label`` is an optional short word from the
        app's vocabulary (``"thumbs_up"``, ``"resolved"``; never the answer's text),
        ``source`` who judged (``"user"``, ``"evaluator"`` or ``"implicit"``), ``tags``
        bounded key/value tags as on usage records.

        The feedback is a signed record, spooled and delivered with the usage records
        (counted in :meth:`flush`'s report) and joined to the call by the collector.
        Returns the feedback's own id once it is spooled.

        Raises ``InvalidRequestError`` with ``.field`` naming ``score``, ``record_id``,
        ``label``, ``tags`` or ``source``; ``ConfigError`` when usage records are off."""
        return self._native.feedback(record_id, score, label, source, dict(tags) if tags is not None else None)

    def close(self, grace: float = 0.0) -> DeliveryReport:
        """Close the client: later calls raise ``ClientClosedError`` (code ``CLIENT_CLOSED``),
        calls and streams still in flight get ``grace`` seconds to end and are then
        cancelled (each writes its ``cancelled`` usage record), the usage spool is drained
        (bounded by ``reporting.shutdown_timeout_ms``) and reporting stops. Returns what
        became of the records (as :meth:`flush`). Idempotent."""
        report = DeliveryReport._from_json(self._native.close(grace))
        _surface_refusals(self._native)
        return report

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asyncio client; same configuration as :class:`Client`."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None, *, config_file: Optional[PathLike] = None) -> None:
        self._native = _native_client(config, config_file)
        self._native.ready()
        self.chat = _Chat(AsyncCompletions(self._native))

    def route(self, *, model: str = "auto", messages: Iterable[Message], **params: Any) -> Record:
        """Where a request would go, and why, without calling anything (CPU only: not async).
        Fields as :meth:`Client.route`."""
        return Record(json.loads(self._native.route(_request_json(model, messages, params))))

    async def flush(self, timeout: float = 10.0) -> DeliveryReport:
        """:meth:`Client.flush` without blocking the event loop."""
        import asyncio

        raw = await asyncio.get_running_loop().run_in_executor(None, self._native.flush, timeout)
        report = DeliveryReport._from_json(raw)
        _surface_refusals(self._native)
        return report

    def usage_status(self) -> DeliveryReport:
        """The same report as :meth:`flush`, now, without waiting."""
        report = DeliveryReport._from_json(self._native.usage_status())
        _surface_refusals(self._native)
        return report

    def feedback(
        self,
        record_id: str,
        score: float,
        *,
        label: Optional[str] = None,
        source: FeedbackSource = "user",
        tags: Optional[Mapping[str, str]] = None,
    ) -> str:
        """:meth:`Client.feedback` (not a coroutine: it only appends to the local spool,
        delivery happens in the background; ``await client.flush()`` waits for it)."""
        return self._native.feedback(record_id, score, label, source, dict(tags) if tags is not None else None)

    async def close(self, grace: float = 0.0) -> DeliveryReport:
        """:meth:`Client.close` without blocking the event loop."""
        import asyncio

        raw = await asyncio.get_running_loop().run_in_executor(None, self._native.close, grace)
        return DeliveryReport._from_json(raw)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def count_tokens(text_or_messages: Union[str, Iterable[Message]], *, model: str = "openai/gpt-4o", **params: Any) -> int:
    """Tokens of a text, or of a chat request's prompt as ``model`` bills it (message
    overhead, names, ``tools=`` definitions and images included). Exact for OpenAI
    encodings, a calibrated estimate elsewhere."""
    if isinstance(text_or_messages, str):
        return _native.count_text(text_or_messages, model)[0]
    raw = json.loads(_native.count_request(_request_json(model, text_or_messages, params)))
    return int(raw["tokens"])


def estimate_cost(*, model: str, messages: Iterable[Message], **params: Any) -> Record:
    """Cost of a request before calling, with the built-in price catalog:
    ``.expected.total_micros`` (expected completion) and ``.max.total_micros`` (``max_tokens``)."""
    return Record(json.loads(_native.estimate_cost(_request_json(model, messages, params))))


def cost(usage: Union[Usage, Mapping[str, Any]], *, model: str, batch: bool = False, cache_write_1h: bool = False) -> Record:
    """Cost of a finished call from its usage, with the built-in price catalog
    (``.total_micros``, integer micro-dollars)."""
    data = usage.to_dict() if isinstance(usage, Usage) else dict(usage)
    return Record(json.loads(_native.cost(json.dumps(data), model, batch, cache_write_1h)))
