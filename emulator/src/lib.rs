//! # gaterouter-emulator
//!
//! A local, deterministic emulator of the OpenAI Chat Completions, Anthropic Messages and Gemini
//! `generateContent` HTTP APIs (streaming included), with on-demand fault injection. Tests in
//! every language and the benchmarks run against it, so this doc is the reference for what it
//! answers.
//!
//! ## Starting it
//! - Library: [`start`]`(addr)` (port 0 allowed) -> [`EmulatorHandle`] with
//!   [`base_url`](EmulatorHandle::base_url) (`http://127.0.0.1:PORT`), [`addr`](EmulatorHandle::addr)
//!   and [`shutdown`](EmulatorHandle::shutdown) (graceful; dropping the handle also stops it).
//!   Sync callers use [`start_blocking`] (own thread and runtime).
//! - Binary: `gaterouter-emulator --listen 127.0.0.1:0` prints exactly one first line
//!   `listening on http://127.0.0.1:PORT` to stdout, then serves until SIGTERM/SIGINT.
//! - Every accepted socket gets `TCP_NODELAY`.
//!
//! ## Routes (all `POST` unless noted)
//! | route | format |
//! |---|---|
//! | `/openai/v1/chat/completions`, `/v1/chat/completions` | OpenAI Chat Completions |
//! | `/deepseek/v1/chat/completions`, `/deepseek/chat/completions` | DeepSeek (OpenAI-compatible) |
//! | `/anthropic/v1/messages`, `/v1/messages` | Anthropic Messages |
//! | `/gemini/{version}/models/{model}:generateContent` | Gemini |
//! | `/gemini/{version}/models/{model}:streamGenerateContent?alt=sse` | Gemini SSE (without `alt=sse`: a streamed JSON array) |
//! | `/{v1beta,v1}/models/{model}:(stream)generateContent` | Gemini without the prefix |
//! | `/anthropic/v1/messages/count_tokens`, `/v1/messages/count_tokens` | Anthropic token count `{"input_tokens"}` |
//! | `…/models/{model}:countTokens` (both Gemini prefixes) | Gemini token count `{"totalTokens"}` (body `contents…` or `generateContentRequest`) |
//! | `POST /_emulator/faults` | queue a fault (see below) |
//! | `POST /_emulator/reset` | clear queued faults, stats, request log, prompt caches, id counter |
//! | `GET /_emulator/stats` | `{"total","by_provider":{p:n},"by_outcome":{o:n},"by_provider_outcome":{p:{o:n}},"faults_queued","connections":{"accepted","nodelay"}}` (connections are not reset) |
//! | `GET /_emulator/requests` | last 100 requests, oldest first: `{"seq","provider","method","path","query","headers","body"}` |
//! | `GET /healthz` | `{"status":"ok"}` |
//!
//! Providers are named `openai`, `deepseek`, `anthropic`, `gemini`. Outcomes are `ok`,
//! `auth_error`, `invalid_request`, `context_length`, or `fault:<kind>` when a fault was applied
//! (the first one named). The same documents are available in-process through
//! [`Emulator::stats`], [`Emulator::requests`], [`Emulator::queue_fault`] and
//! [`Emulator::reset`] (via [`EmulatorHandle::emulator`]).
//! In the request log, the values of `authorization`, `x-api-key`, `x-goog-api-key`, `api-key`
//! and the `key=` query parameter are masked to their first 4 characters plus `***`
//! (`Bearer sk-t***`); every other header is kept (lower-case names). `body` is the parsed
//! JSON, or `{"_raw": "..."}` when it is not JSON.
//!
//! ## Auth
//! OpenAI/DeepSeek: `Authorization: Bearer K`. Anthropic: `x-api-key: K` or
//! `Authorization: Bearer K`, plus `anthropic-version` (missing -> 400
//! `invalid_request_error`). Gemini: `x-goog-api-key: K` or `?key=K`. A missing key or a key
//! starting with `bad` -> 401 in the provider's error format (Gemini: `UNAUTHENTICATED`).
//!
//! ## Validation (400 in the provider's real shape)
//! - OpenAI/DeepSeek: `model` required; `messages` required and non-empty (`code:
//!   "empty_array"`); roles system|developer|user|assistant|tool|function; a `tool` message must
//!   follow an assistant message with `tool_calls`; reasoning models (`o1*`, `o3*`, `o4*`,
//!   `gpt-5*`) reject `max_tokens` (`code: "unsupported_parameter"`, use
//!   `max_completion_tokens`) and a `temperature` other than 1 (`code: "unsupported_value"`);
//!   `stream_options` without `stream: true` is rejected; `response_format: json_object`
//!   requires the word "json" in the messages (as the real API does).
//! - Anthropic: `model`, `max_tokens` required; `messages` non-empty, roles only user/assistant,
//!   starting with user and alternating; `thinking.budget_tokens` >= 1024 and < `max_tokens`;
//!   with thinking enabled `temperature` may only be 1.
//! - Gemini: `contents` non-empty; roles `user`/`model` (missing role = user).
//! - Invalid JSON body -> 400. Prompt over the context window (OpenAI 128k, `gpt-4.1*` 1,047,576,
//!   `gpt-5*` 400k; DeepSeek 128k; Anthropic 200k; Gemini 1,048,576) -> the real
//!   context-length 400.
//!
//! ## The deterministic reply
//! Text: `"Emulated reply from {model}: {first 80 chars of the last user text}"` (trimmed,
//! directives removed). When the last turn is a tool result (OpenAI `tool` message, Anthropic
//! `tool_result` block, Gemini `functionResponse`): `"Emulated reply from {model}: received
//! tool result: {first 80 chars of the result}"`.
//! - JSON mode (OpenAI `response_format` json_object; Gemini `responseMimeType:
//!   application/json`; Anthropic `output_format`/`output_config.format` json_schema): the reply is
//!   `{"model": M, "reply": TEXT}`; with a schema (OpenAI `json_schema.schema`, Gemini
//!   `responseSchema`/`responseJsonSchema`) it is synthesized from the schema with all properties.
//! - Tools: if tools are given, the last turn is a user turn (not a tool result) and the tool
//!   choice is not none, the first tool (or the named one) is called with arguments synthesized
//!   from its schema: required properties only; string `"example"`, integer 1, number 1.5,
//!   boolean true, enum -> first value, array -> `[]`, object -> recurse. Finish:
//!   `tool_calls` / `tool_use` / `STOP` with a `functionCall` part. Ids: `call_emu{N}`,
//!   `toolu_emu{N}`.
//! - Stop sequences (`stop`, `stop_sequences`, `stopSequences`): the text is cut before the first
//!   occurrence (finish `stop` / `stop_sequence` with `stop_sequence` set / `STOP`).
//! - max tokens (`max_completion_tokens` or `max_tokens`; Anthropic `max_tokens`; Gemini
//!   `generationConfig.maxOutputTokens`): the text is cut to that many tokens (`4n` chars) and
//!   finishes `length` / `max_tokens` / `MAX_TOKENS`. Reasoning tokens are budgeted first and
//!   share the limit. Tool calls are never cut.
//! - Response ids count up per process: `chatcmpl-emu{N}`, `msg_emu{N}`, `resp-emu{N}`.
//!
//! ## The usage rule
//! - `tok(s) = ceil(chars(s) / 4)` (Unicode scalar values), applied to each piece separately.
//! - prompt tokens = 3
//!   + per message / turn (the system prompt and Gemini `systemInstruction` count as one): 4
//!   + per text part / text block: tok(text); per image, audio, file or inline-data part: 85
//!   + per tool call (OpenAI `tool_calls`, Anthropic `tool_use`, Gemini `functionCall`):
//!     tok(name) + tok(arguments JSON); per tool result: OpenAI `tool` message content as text,
//!     Anthropic `tool_result` tok(its text) (+85 per non-text part), Gemini `functionResponse`
//!     tok(name) + tok(response JSON); Anthropic `thinking` blocks sent back: tok(thinking)
//!   + tools: OpenAI and Gemini tok(JSON of the whole `tools` array); Anthropic tok(JSON of each
//!     tool)
//!   + a JSON schema for structured output: tok(JSON of the schema).
//!
//!   JSON is counted in its compact serialization (no spaces). The count-tokens routes return
//!   exactly this number.
//! - completion tokens = tok(reply text), or tok(tool name) + tok(arguments JSON), plus the
//!   reasoning tokens.
//! - Reasoning text is `Thinking about the request to {model}: "{snippet}". The answer should be
//!   short and deterministic.` capped by the thinking budget and max tokens. OpenAI reasoning
//!   models report it only as `completion_tokens_details.reasoning_tokens` (included in
//!   `completion_tokens`; none with `reasoning_effort: "none"|"minimal"`); DeepSeek
//!   `deepseek-reasoner` returns it as `reasoning_content`; Anthropic with `thinking` enabled
//!   (`budget_tokens`) or `adaptive` returns a `thinking` block with a `signature` (counted in
//!   `output_tokens`); Gemini models named `*2.5*` or `gemini-3*` report `thoughtsTokenCount`
//!   (billed as output, not in `candidatesTokenCount`, in `totalTokenCount`) unless
//!   `thinkingBudget` is 0; a positive budget caps it; a part with `thought: true` only with
//!   `includeThoughts`.
//! - Prompt caching (per-process memory, prefixes matched at message/block granularity and keyed
//!   by provider + model):
//!   - OpenAI: prompts >= 1024 tokens; `cached_tokens` = the longest previously seen prefix,
//!     rounded down to a multiple of 128 (0 below 1024).
//!   - DeepSeek: same with 64-token units and no minimum beyond 64;
//!     `prompt_cache_hit_tokens` = cached, `prompt_cache_miss_tokens` = prompt - cached.
//!   - Anthropic: only prefixes ending at a block with `cache_control` (tools, system blocks,
//!     message content blocks) of >= 1024 tokens. First time -> `cache_creation_input_tokens`
//!     (prefix - read), repeat -> `cache_read_input_tokens`; `input_tokens` excludes both.
//!     `cache_creation.ephemeral_1h_input_tokens` when the breakpoint has `ttl: "1h"`. Reads
//!     look back like the real API: a prefix cached at an earlier request's breakpoint is read
//!     even when the breakpoint has since moved to a later block.
//!   - Gemini: implicit, prompts >= 1024 tokens, `cachedContentTokenCount` = longest seen prefix
//!     (exact; `promptTokenCount` includes it).
//!
//! ## Streaming
//! - OpenAI/DeepSeek: `data: {chunk}` lines (`object: "chat.completion.chunk"`): first delta
//!   `{role:"assistant", content:""}` (DeepSeek reasoner then streams `reasoning_content`), text
//!   in 16-char deltas, tool calls as `{index, id, type, function:{name, arguments:""}}` then
//!   argument fragments, a chunk with `finish_reason`, then only with
//!   `stream_options.include_usage` a chunk with `choices: []` and `usage` (earlier chunks carry
//!   `usage: null`), then `data: [DONE]`.
//! - Anthropic: `event:`+`data:` pairs: `message_start` (usage with input/cache tokens and
//!   `output_tokens: 1`), then per block `content_block_start` (a `ping` follows the first one)
//!   / `content_block_delta`
//!   (`thinking_delta` + `signature_delta`, `text_delta`, `input_json_delta`) /
//!   `content_block_stop`, `message_delta` (stop_reason, stop_sequence, cumulative
//!   `usage.output_tokens`), `message_stop`.
//! - Gemini (`alt=sse`): `data:` lines, each a full `GenerateContentResponse` with a text piece
//!   (function calls come whole in one chunk). Like the real API every chunk carries
//!   `usageMetadata`, cumulative (`candidatesTokenCount` grows; take the last); the last chunk
//!   has `finishReason`.
//!
//! ## Faults
//! Three ways to inject, checked in this order (the first source that has any wins):
//! 1. Header `x-emulator-fault: kind[;param=value...]` (several separated by `,`).
//! 2. Directive(s) `[[emulator:kind;param=value]]` in the last user message text.
//! 3. Queue: `POST /_emulator/faults` with `{"fault": kind, "times": N (default 1),
//!    "provider": "openai"|"anthropic"|"gemini"|"deepseek"|null, "model": M|null, ...params}`
//!    (params as strings or numbers); each matching request (provider and, when given, exact
//!    model) consumes one, oldest first. Answers `{"queued": total pending uses}`. Give each
//!    parallel test its own model name to keep queued faults isolated.
//!
//! Header and directive faults apply to every request that carries them, retries included. Add
//! `times=N` (e.g. `[[emulator:rate_limit;retry_after=0.1;times=2]]`) to fire only for the first
//! N requests with the same provider, model, last user text and fault spec; later identical
//! requests succeed (so a retry test works without the admin API). When every fault of the
//! header is used up, directives and then the queue are consulted. `reset` clears the counters.
//!
//! Faults apply after authentication and before validation (not to the token-count routes).
//! An unknown kind -> 400.
//!
//! | kind | effect |
//! |---|---|
//! | `rate_limit` | 429, `retry-after` (ceil seconds) and `retry-after-ms`; param `retry_after` (default 1, fractional ok) |
//! | `server_error` | 500 (`api_error` / `server_error` / `INTERNAL`); param `status` (e.g. 502, 503, 504) sends the same body under that status |
//! | `overloaded` | Anthropic 529 `overloaded_error`; Gemini 503 `UNAVAILABLE`; OpenAI/DeepSeek 503 |
//! | `slow` | wait `delay_ms` (default 1000) before answering |
//! | `slow_stream` | wait `delay_ms` (default 200) between SSE events |
//! | `cut_stream` | abort the connection after `after_events` (default 2) SSE events, no end marker; `clean=true` ends the body normally instead. Non-streaming: half the body then abort |
//! | `malformed_json` | 200 with the JSON body truncated (stream: the 2nd event's JSON truncated) |
//! | `html_error` | 502 `text/html` page; param `status` changes it (`status=200`: a captive portal's page) |
//! | `bad_tool_args` | a tool call is made even without tools (`emulated_tool`); OpenAI/DeepSeek `arguments` is invalid JSON; Anthropic streaming `partial_json` concatenates to invalid JSON, non-streaming `input` lacks the required properties; Gemini `args` lacks the required properties |
//! | `auth` | 401 |
//! | `context_length` | the provider's context-length 400 |
//! | `bad_request` | 400 `invalid_request_error` / `INVALID_ARGUMENT` |
//! | `content_filter` | 200, the first half of the reply text, finish `content_filter` (OpenAI/DeepSeek) / `stop_reason: "refusal"` (Anthropic); Gemini answers a blocked prompt: no `candidates`, `promptFeedback.blockReason: "SAFETY"`, prompt-only `usageMetadata` |
//!
//! Mid-stream errors: `rate_limit`, `server_error` and `overloaded` with `after_events=N` on a
//! streaming request answer 200, send N normal events, then the provider's in-stream error and
//! end the body (no end marker): OpenAI/DeepSeek `data: {"error":{...}}`, Anthropic
//! `event: error` + `data: {"type":"error","error":{"type":"overloaded_error",...}}`, Gemini
//! `data: {"error":{"code","message","status"}}`. The stats outcome is still `fault:<kind>`.

mod anthropic;
mod common;
pub mod faults;
mod gemini;
mod openai;
mod provider;
mod server;

pub use provider::Provider;
pub use server::{BlockingHandle, Emulator, EmulatorHandle, start, start_blocking};
