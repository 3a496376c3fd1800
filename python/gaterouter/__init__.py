"""GateRouter: one API over OpenAI, Anthropic, Gemini and OpenAI-compatible models.

>>> import gaterouter
>>> client = gaterouter.Client()                      # keys from the environment
>>> resp = client.chat.completions.create(
...     model="anthropic/claude-sonnet-4-5",
...     messages=[{"role": "user", "content": "Hello"}])
>>> resp.choices[0].message.content, resp.usage.prompt_tokens
"""

from ._client import AsyncClient, AsyncStream, Client, Stream, cost, count_tokens, estimate_cost
from ._delivery import DeliveryReport, GateRouterWarning, RefusalCount, UsageRefusedWarning
from ._native import (
    APITimeoutError,
    AuthenticationError,
    BudgetExceededError,
    ClientClosedError,
    ConfigError,
    ContextLengthExceededError,
    GateRouterError,
    InvalidRequestError,
    InvalidResponseError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
    __version__,
)
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    FunctionCall,
    Record,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "DeliveryReport",
    "RefusalCount",
    "GateRouterWarning",
    "UsageRefusedWarning",
    "Client",
    "AsyncClient",
    "Stream",
    "AsyncStream",
    "count_tokens",
    "estimate_cost",
    "cost",
    "Record",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "FunctionCall",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "GateRouterError",
    "ConfigError",
    "AuthenticationError",
    "RateLimitError",
    "ProviderUnavailableError",
    "InvalidRequestError",
    "ContextLengthExceededError",
    "APITimeoutError",
    "StreamInterruptedError",
    "InvalidResponseError",
    "BudgetExceededError",
    "PermissionDeniedError",
    "ClientClosedError",
    "__version__",
]
