// Types of the `gaterouter` package (hand-written; the shapes are those the Rust core
// serializes, which follow the OpenAI Chat Completions API and the OpenAI Node SDK).

// ---------------------------------------------------------------- configuration

/** Wire format of a provider. */
export type ProviderKind = 'openai' | 'anthropic' | 'gemini'

/**
 * One provider entry. For a built-in name (`openai`, `anthropic`, `gemini`, `deepseek`,
 * ...) every field is optional and overrides the built-in; a new name needs `kind` and
 * `base_url`.
 */
export interface ProviderConfig {
  kind?: ProviderKind
  /** OpenAI-style: up to and including `/v1`; Anthropic: the host; Gemini: up to the API version. */
  base_url?: string
  /** The API key inline. Prefer `api_key_env`. */
  api_key?: string
  /** Name of the environment variable holding the API key. */
  api_key_env?: string
  /** Extra HTTP headers sent with every request. */
  headers?: Record<string, string>
  /** Anthropic `anthropic-version` header. Default `2023-06-01`. */
  api_version?: string
  /** Per-provider request timeout in milliseconds (overrides `timeouts.request_ms`). */
  request_timeout_ms?: number
}

/** Who is calling; stamped on usage records. */
export interface IdentityConfig {
  org?: string
  department?: string
  project?: string
  group?: string
  user?: string
  api_key_id?: string
}

/** Timeouts in milliseconds. */
export interface TimeoutsConfig {
  /** TCP + TLS connect. Default 10 000. */
  connect_ms?: number
  /** Whole non-streaming request, and a stream's first byte. Default 120 000. */
  request_ms?: number
  /** Longest silence between two stream events. Default 60 000. */
  stream_idle_ms?: number
}

/** Retries for 429, 5xx, timeouts and connection failures (4xx are never retried). */
export interface RetryConfig {
  /** Retries after the first attempt. Default 2. */
  max_retries?: number
  /** First backoff. Default 500. */
  initial_backoff_ms?: number
  /** Backoff ceiling. Default 8 000. */
  max_backoff_ms?: number
  /** A `retry-after` longer than this is not waited for. Default 60 000. */
  max_retry_after_ms?: number
  /** Time budget for all attempts of one call. Default 180 000. */
  max_total_ms?: number
}

/** A model the app may use. */
export interface ModelEntry {
  /** `provider/model`. */
  id: string
  /** Name sent to the provider when it differs from the model part of `id`. */
  provider_model?: string
}

/**
 * Usage records (`[reporting]`): each call's record is signed with the API key's Ed25519
 * key, spooled to disk and shipped to the collector. Records are on when a collector URL
 * is set, or when `identity.api_key_id` and a signing key are.
 */
export interface ReportingConfig {
  /** `spool` (default) or `off`. */
  mode?: 'spool' | 'off'
  /** Collector base URL; records are POSTed to `{collector_url}/v1/usage`. */
  collector_url?: string
  /** Spool directory (default: under the platform data dir, one slot per process). */
  spool_dir?: string
  /** File with the Ed25519 signing key (base64 32-byte seed, or PKCS#8 PEM). */
  signing_key_file?: string
  /** Environment variable holding the signing key (default `GATEROUTER_SIGNING_KEY`). */
  signing_key_env?: string
  /** Records per batch. Default 500. */
  batch_max_records?: number
  /** Longest a record waits for a fuller batch. Default 2 000. */
  batch_max_age_ms?: number
  /** fsync interval of the spool. Default 200. */
  fsync_interval_ms?: number
  /** Cap on the spool's bytes. Default 256 MiB. */
  max_spool_bytes?: number
  /** Collector request timeout. Default 10 000. */
  request_timeout_ms?: number
  retry_initial_backoff_ms?: number
  retry_max_backoff_ms?: number
  /** How long `close()` waits for the spool to drain. Default 5 000. */
  shutdown_timeout_ms?: number
}

/** Complexity tier of an `auto` request. */
export type Tier = 'light' | 'standard' | 'heavy'

/** `[routing]`: how `model: 'auto'` picks a model. */
export interface RoutingConfig {
  /** Ranking policy. Default `balanced`. */
  policy?: 'cheapest' | 'balanced' | 'quality'
  /** Models per tier, preferred first (`provider/model`). */
  light?: string[]
  standard?: string[]
  heavy?: string[]
  /** A model that always goes first in a tier when usable. */
  pin?: Partial<Record<Tier, string>>
  /** Load-spreading weights by model. */
  weights?: Record<string, number>
  /** Fallback chains for explicit models. */
  fallbacks?: Record<string, string[]>
  /** Fallbacks after the first model, at most. Default 2. */
  max_fallbacks?: number
  /** Completion tokens assumed for cost ranking when `max_tokens` is unset. Default 500. */
  expected_completion_tokens?: number
  /** Scorer weights file replacing the built-in one. */
  scorer_weights_file?: string
  circuit_breaker?: { failure_threshold?: number; cooldown_ms?: number }
}

/**
 * `[policy]`: the organization's policy and budgets, fetched from the collector
 * (`reporting.collector_url`) and enforced before each call.
 */
export interface PolicyConfig {
  /**
   * `auto` (default: on when `reporting.collector_url`, `identity.api_key_id` and a
   * signing key are all set), `off`, or `required` (like `auto`, but a missing piece is
   * a `ConfigError`).
   */
  enforce?: 'auto' | 'off' | 'required'
  /** How long a fetched policy is used before asking again. Default: the collector's `ttl_ms`. */
  cache_ttl_ms?: number
  /** Timeout of each policy, reservation and settle request. Default 2 000. */
  request_timeout_ms?: number
  /**
   * When the collector cannot be reached: `last_known` (default: the last policy, for up
   * to `max_stale_ms`), `deny` (fail closed) or `allow` (fail open).
   */
  when_unreachable?: 'last_known' | 'deny' | 'allow'
  /** Oldest last-known policy still enforced offline. Default 86 400 000 (24 h). */
  max_stale_ms?: number
  /**
   * The collector's weights public key (standard base64 Ed25519, printed by `gaterouter
   * admin routing show --org ORG`): learned router weights served with the policy are
   * used only when this key signed them. Unset: any validly signed weights from the
   * collector this client talks to.
   */
  weights_public_key?: string
}

/** A price override or addition, USD per million tokens. */
export interface ModelPriceOverride {
  input?: number
  output?: number
  cached_input?: number
  cache_write_5m?: number
  cache_write_1h?: number
  reasoning?: number
  batch_discount_pct?: number
  tiers?: Array<Record<string, number>>
  context_window?: number
  max_output?: number
}

/**
 * The configuration, in the structure of `gaterouter.toml` (snake_case keys). Unknown
 * keys are refused with a `ConfigError` naming them.
 */
export interface GateRouterConfig {
  /** Model used for `auto` until routing picks one. Default `openai/gpt-4o-mini`. */
  default_model?: string
  providers?: Record<string, ProviderConfig>
  /** Whether the built-in providers are available. Default true. */
  builtin_providers?: boolean
  /** Allowed models (empty: all models of configured providers). */
  models?: ModelEntry[]
  identity?: IdentityConfig
  timeouts?: TimeoutsConfig
  retry?: RetryConfig
  reporting?: ReportingConfig
  routing?: RoutingConfig
  /** Price overrides and additions keyed by `provider/model`. */
  prices?: Record<string, ModelPriceOverride>
  policy?: PolicyConfig
}

/** Options of `new GateRouter()`: at most one of `config` and `configFile`. */
export interface ClientOptions {
  /** The configuration as an object. */
  config?: GateRouterConfig
  /** Path of a TOML configuration file. */
  configFile?: string
}

// ---------------------------------------------------------------- requests

export interface ChatCompletionContentPartText {
  type: 'text'
  text: string
}

export interface ChatCompletionContentPartImage {
  type: 'image_url'
  image_url: {
    /** `https://...` or `data:image/png;base64,...`. */
    url: string
    detail?: 'auto' | 'low' | 'high'
  }
}

export type ChatCompletionContentPart = ChatCompletionContentPartText | ChatCompletionContentPartImage

export interface ChatCompletionSystemMessageParam {
  role: 'system' | 'developer'
  content: string | ChatCompletionContentPartText[]
  name?: string
}

export interface ChatCompletionUserMessageParam {
  role: 'user'
  content: string | ChatCompletionContentPart[]
  name?: string
}

export interface ChatCompletionMessageToolCall {
  /** Repeated as `tool_call_id` by the tool message that answers it. */
  id: string
  type: 'function'
  function: {
    name: string
    /** The arguments as a JSON-encoded string. */
    arguments: string
  }
}

export interface ChatCompletionAssistantMessageParam {
  role: 'assistant'
  content?: string | ChatCompletionContentPartText[] | null
  name?: string
  tool_calls?: ChatCompletionMessageToolCall[]
  /** Accepted (so a response message can be appended as is) and never sent back. */
  reasoning_content?: string | null
  refusal?: string | null
}

export interface ChatCompletionToolMessageParam {
  role: 'tool'
  tool_call_id: string
  content: string | ChatCompletionContentPartText[]
}

export type ChatCompletionMessageParam =
  | ChatCompletionSystemMessageParam
  | ChatCompletionUserMessageParam
  | ChatCompletionAssistantMessageParam
  | ChatCompletionToolMessageParam

export interface FunctionDefinition {
  /** 1-64 characters of a-z, A-Z, 0-9, _ or -. */
  name: string
  description?: string
  /** JSON Schema of the arguments object. */
  parameters?: Record<string, unknown>
  strict?: boolean | null
}

export interface ChatCompletionTool {
  type: 'function'
  function: FunctionDefinition
}

export type ChatCompletionToolChoiceOption =
  | 'auto'
  | 'none'
  | 'required'
  | { type: 'function'; function: { name: string } }

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema'
      json_schema: { name: string; description?: string; schema: Record<string, unknown>; strict?: boolean | null }
    }

/** Request body of `chat.completions.create` (OpenAI Node SDK field names). */
export interface ChatCompletionCreateParamsBase {
  /** `provider/model` (e.g. `anthropic/claude-sonnet-4-5`) or `auto`. */
  model: string
  messages: ChatCompletionMessageParam[]
  stream?: boolean | null
  /** Accepted for compatibility and ignored: the last chunk always carries `usage`. */
  stream_options?: { include_usage?: boolean } | null
  temperature?: number | null
  top_p?: number | null
  max_tokens?: number | null
  /** Alias of `max_tokens`. */
  max_completion_tokens?: number | null
  stop?: string | string[] | null
  tools?: ChatCompletionTool[]
  tool_choice?: ChatCompletionToolChoiceOption
  response_format?: ResponseFormat
  seed?: number | null
  user?: string
  metadata?: Record<string, string> | null
  /** Cancels the call (also accepted in the second argument, as in the OpenAI SDK). */
  signal?: AbortSignal | null
}

export interface ChatCompletionCreateParamsNonStreaming extends ChatCompletionCreateParamsBase {
  stream?: false | null
}

export interface ChatCompletionCreateParamsStreaming extends ChatCompletionCreateParamsBase {
  stream: true
}

export type ChatCompletionCreateParams = ChatCompletionCreateParamsNonStreaming | ChatCompletionCreateParamsStreaming

/** Per-call options (second argument of `create`). */
export interface RequestOptions {
  /** Aborting rejects the call with an {@link AbortError} and drops the provider request. */
  signal?: AbortSignal | null
}

// ---------------------------------------------------------------- responses

/**
 * Token usage in OpenAI's convention whatever the provider: `prompt_tokens` includes
 * `cached_prompt_tokens` and `cache_write_tokens`; `completion_tokens` includes
 * `reasoning_tokens`.
 */
export interface CompletionUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  cached_prompt_tokens: number
  cache_write_tokens: number
  reasoning_tokens: number
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter'

export interface ChatCompletionMessage {
  role: 'assistant'
  content: string | null
  /** Absent when the model called no tool. */
  tool_calls?: ChatCompletionMessageToolCall[]
  /** Visible reasoning text (DeepSeek, Anthropic/Gemini thinking), when present. */
  reasoning_content?: string
  refusal?: string
}

export interface ChatCompletionChoice {
  index: number
  message: ChatCompletionMessage
  finish_reason: FinishReason
}

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  /** Unix seconds. */
  created: number
  /** The concrete `provider/model` that answered. */
  model: string
  choices: ChatCompletionChoice[]
  usage: CompletionUsage
  /**
   * Id of the call's usage record: pass it to `client.feedback()` to say how good the
   * answer was. Absent when usage records are off (no `[reporting]` config).
   */
  usage_record_id?: string
  /**
   * Shadow sampling (an `auto` call of an organization that turned it on, collector
   * `routing.shadow_permille`): the same request's answer from the other arm (the heavy
   * tier if this one is lighter, else a lighter one), with its own `usage_record_id`
   * (and `route.shadow_of` naming this call's record), for your evaluator to rate beside
   * this one. Absent otherwise, or when the shadow call failed (its usage record says how).
   */
  shadow?: ChatCompletion
  /** The shadow call was drawn but failed: its error code and message. */
  shadow_error?: { code: ErrorCode; message: string }
}

export interface ChatCompletionChunkToolCall {
  /** Fragments with the same index belong to one call. */
  index: number
  id?: string
  type?: 'function'
  function: { name?: string; arguments?: string }
}

export interface ChatCompletionChunkDelta {
  role?: 'assistant'
  content?: string
  reasoning_content?: string
  tool_calls?: ChatCompletionChunkToolCall[]
}

export interface ChatCompletionChunkChoice {
  index: number
  delta: ChatCompletionChunkDelta
  finish_reason: FinishReason | null
}

/** A stream chunk; the last chunk of a stream has empty `choices` and `usage` set. */
export interface ChatCompletionChunk {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  choices: ChatCompletionChunkChoice[]
  usage?: CompletionUsage
  /**
   * Id of the call's usage record, on the chunk that carries `usage` (absent when usage
   * records are off): pass it to `client.feedback()`.
   */
  usage_record_id?: string
}

/** Async iterable of chunks: `for await (const chunk of stream)`. */
export declare class Stream implements AsyncIterable<ChatCompletionChunk> {
  private constructor()
  /** Final usage, set once the last chunk has been read; `null` before. */
  usage: CompletionUsage | null
  /**
   * The call's usage record id (the last chunk's `usage_record_id`), for
   * `client.feedback()`; `null` before the last chunk, or when usage records are off.
   */
  usageRecordId: string | null
  /** Aborting it stops the stream and drops the connection. */
  readonly controller: AbortController
  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk>
  /** Stop reading and drop the connection. */
  close(): Promise<void>
}

// ---------------------------------------------------------------- errors

/** The stable error codes of the Rust core, plus `CLIENT_CLOSED`. */
export type ErrorCode =
  | 'CONFIG'
  | 'AUTH'
  | 'RATE_LIMITED'
  | 'PROVIDER_UNAVAILABLE'
  | 'INVALID_REQUEST'
  | 'CONTEXT_LENGTH_EXCEEDED'
  | 'TIMEOUT'
  | 'STREAM_INTERRUPTED'
  | 'INVALID_RESPONSE'
  | 'BUDGET_EXCEEDED'
  | 'PERMISSION_DENIED'
  | 'CLIENT_CLOSED'

export interface GateRouterErrorInfo {
  code?: ErrorCode | (string & {})
  retryAfter?: number | null
  provider?: string | null
  status?: number | null
  providerMessage?: string | null
  field?: string | null
  rule?: string | null
  level?: string | null
  budget?: BudgetInfo | null
}

/** A budget named by a `BUDGET_EXCEEDED` error (money in integer micro-dollars). */
export interface BudgetInfo {
  id: string
  /** Where it is attached, e.g. `department:eng`. */
  level: string
  metric: 'usd' | 'tokens'
  period: 'hour' | 'day' | 'month'
  limit: number
  used: number
  reserved: number
  remaining: number
  periodStartMs: number
  resetsAtMs: number
  enforcement: 'hard' | 'soft'
  notifyAt: number[]
}

/** Base class of every GateRouter error. */
export declare class GateRouterError extends Error {
  constructor(message: string, info?: GateRouterErrorInfo, options?: ErrorOptions)
  /** Stable code; new codes may be added. */
  readonly code: ErrorCode | (string & {})
  /** Seconds to wait before retrying, when the provider said (rate limits). */
  readonly retryAfter: number | null
  /** The provider the error came from (config name, e.g. `openai`). */
  readonly provider: string | null
  /** The provider's HTTP status. */
  readonly status: number | null
  /** The provider's own error message. */
  readonly providerMessage: string | null
  /** The offending request field (`messages[2].tool_call_id`) for `INVALID_REQUEST`. */
  readonly field: string | null
  /** `PERMISSION_DENIED`: the policy rule (`allow_models`, `deny_models`, ...). */
  readonly rule: string | null
  /** Where the rule or budget was set, e.g. `department:eng`. */
  readonly level: string | null
  /** `BUDGET_EXCEEDED`: the budget, what is left and when it resets. */
  readonly budget: BudgetInfo | null
}
/** `CONFIG`: a config file, field or environment variable must be fixed. */
export declare class ConfigError extends GateRouterError {}
/** `AUTH`: the provider refused the credentials. */
export declare class AuthenticationError extends GateRouterError {}
/** `RATE_LIMITED`: see `retryAfter`. */
export declare class RateLimitError extends GateRouterError {}
/** `PROVIDER_UNAVAILABLE`: down, overloaded or unreachable. */
export declare class ProviderUnavailableError extends GateRouterError {}
/** `INVALID_REQUEST`: never retried; `field` names the culprit when known. */
export declare class InvalidRequestError extends GateRouterError {}
/** `CONTEXT_LENGTH_EXCEEDED`: the prompt plus `max_tokens` do not fit. */
export declare class ContextLengthExceededError extends InvalidRequestError {}
/** `TIMEOUT`: no answer within the configured timeout. */
export declare class APITimeoutError extends GateRouterError {}
/** `STREAM_INTERRUPTED`: a stream ended early. */
export declare class StreamInterruptedError extends GateRouterError {}
/** `INVALID_RESPONSE`: the provider's answer is unusable. */
export declare class InvalidResponseError extends GateRouterError {}
/** `BUDGET_EXCEEDED`: a budget or quota would be exceeded. */
export declare class BudgetExceededError extends GateRouterError {}
/** `PERMISSION_DENIED`: the caller may not use this model. */
export declare class PermissionDeniedError extends GateRouterError {}
/** `CLIENT_CLOSED`: `close()` was called before this call. */
export declare class ClientClosedError extends GateRouterError {}

/** A call cancelled by an AbortSignal; `cause` is the signal's reason. */
export declare class AbortError extends Error {
  constructor(message?: string, options?: ErrorOptions)
  readonly name: 'AbortError'
  readonly code: 'ABORT_ERR'
}

// ---------------------------------------------------------------- helpers' results (camelCase)

/** Where the prompt tokens come from. */
export interface PromptBreakdown {
  /** Message text, tool-call names and arguments, tool results. */
  text: number
  /** Chat formatting: per-message overhead, roles, reply priming. */
  overhead: number
  /** Participant `name` fields. */
  names: number
  /** Tool definitions, `tool_choice`, a JSON-schema response format. */
  tools: number
  images: number
  /** Images of unknown size (URLs), counted at an assumed size. */
  imagesAssumed: number
}

/** Billed prompt tokens of a request. */
export interface PromptCount {
  tokens: number
  /** True when counted with the model's real tokenizer and a published formula. */
  exact: boolean
  breakdown: PromptBreakdown
}

/** A cost in integer micro-dollars (1 USD = 1 000 000). */
export interface Cost {
  totalMicros: number
  inputMicros: number
  cachedInputMicros: number
  cacheWriteMicros: number
  outputMicros: number
  reasoningMicros: number
  currency: 'USD'
  /** The catalog entry used (`provider/model`). */
  pricedAs: string
  batch: boolean
  /** The long-context tier applied, by its threshold. */
  tierAboveInputTokens?: number
}

/** A cost estimate before the call. */
export interface CostEstimate {
  prompt: PromptCount
  /** Completion tokens assumed for `expected`. */
  expectedCompletionTokens: number
  /** Completion bound used for `max` (`max_tokens`, else the model's limit). */
  maxCompletionTokens: number
  expected: Cost
  max: Cost
}

export interface FeatureContribution {
  name: string
  value: number
  normalized: number
  weight: number
  contribution: number
}

/** A ranked candidate model. */
export interface RouteCandidate {
  model: string
  /** Cost with the expected completion length (micro-USD), when priced. */
  estimatedCostMicros?: number
  /** Cost if the model writes `max_tokens` (micro-USD), when priced. */
  maxCostMicros?: number
  contextWindow?: number
  /** Observed latency, when known. */
  latencyMs?: number
  /** Which tier list it came from (auto only). */
  tier?: Tier
  /**
   * Predicted success on this request in [0, 1], when the router's weights have a success
   * model for it (`gaterouter route calibrate` on outcomes of several models).
   */
  predictedSuccess?: number
}

/** Where a request goes, and why. */
export interface RouteDecision {
  mode: 'auto' | 'explicit'
  /** Complexity score in [0, 1] (auto only). */
  score?: number
  /** Tier the score mapped to (auto only). */
  tier?: Tier
  /** The tier the chosen model came from, when the scored tier had no usable model. */
  servedTier?: Tier
  /** Every feature's contribution to the score (auto only). */
  features?: FeatureContribution[]
  policy: 'cheapest' | 'balanced' | 'quality' | 'fastest'
  /** The model tried first. */
  chosen: string
  /** `chosen` first, then the fallbacks in order. */
  candidates: RouteCandidate[]
  /** Models left out: which rule (`kind`) and the sentence saying why. */
  excluded?: Array<{
    model: string
    kind: 'not_permitted' | 'unknown_provider' | 'no_api_key' | 'circuit_open' | 'capability' | 'context_window' | 'budget'
    reason: string
  }>
  /** One line saying why `chosen` was chosen. */
  reason: string
  estimatedPromptTokens: number
  /**
   * Version (fingerprint, 16 hex digits) of the router weights that scored the request
   * (auto only): the builtin ones, a weights file's (`routing.scorer_weights_file`), or
   * the organization's learned weights served by the collector with the policy.
   */
  weightsVersion?: string
  /** Exploration and propensity, when the organization learns from outcomes (auto only). */
  learning?: RouteLearning
}

/** What an `auto` decision logged for learning from outcomes. */
export interface RouteLearning {
  /** The tier was drawn by exploration, not by the score. */
  explored: boolean
  /** Probability the policy gave the arm the call went to (heavy vs lighter tiers). */
  propensity: number
  /** The model was drawn by within-tier exploration, not the tier's policy. */
  modelExplored: boolean
  /**
   * Probability the router gave the chosen model: its tier's probability times the
   * model's within its tier.
   */
  modelPropensity: number
  /** The tier the score alone would have picked. */
  scoredTier: Tier
}

/**
 * What became of the usage records: `flush()` and `usageStatus()`. `drained` only says
 * nothing is pending (refused records leave the spool too): check `refused`.
 */
export interface DeliveryReport {
  /** Nothing is pending: every record was delivered **or refused**. */
  drained: boolean
  /** Records the collector stored since the client started. */
  delivered: number
  /** Records in the spool, not yet delivered. */
  pending: number
  /** Records the collector refused since the client started (dead-lettered). */
  refused: number
  /** Refused records per reason, most frequent first. */
  refusals: Array<{ reason: string; count: number }>
  /** The latest refusal reason, in the collector's words. */
  lastRefusal: string | null
  /** Records in the spool's dead-letter file (earlier runs included). */
  deadLetters: number
  /** Records dropped locally because the spool was full. */
  overflow: number
  /** Age of the oldest pending record. */
  oldestPendingAgeMs: number | null
  /** The last delivery problem (collector unreachable, ...), while it lasts. */
  lastError: string | null
  /** The spool directory (null: usage records are off). */
  spoolDir: string | null
}

/** Who judged a call's answer. */
export type FeedbackSource = 'user' | 'evaluator' | 'implicit'

/** Options of `client.feedback()`. */
export interface FeedbackOptions {
  /**
   * A short word from your app's vocabulary (`thumbs_up`, `resolved`): 1 to 64 bytes, no
   * control characters. Never the answer's text: feedback records hold no text.
   */
  label?: string | null
  /** Who judged: the end user (default), an automatic evaluator, or inferred from behaviour. */
  source?: FeedbackSource | null
  /** Tags, bounded as on usage records (string values). */
  tags?: Record<string, string> | null
}

/** @deprecated the old name of {@link DeliveryReport}. */
export type FlushResult = DeliveryReport

/**
 * Body of `route` / `countTokens` / `estimateCost`: a chat request whose `model` may be
 * omitted (`auto`).
 */
export type RequestBody = Omit<ChatCompletionCreateParamsBase, 'model' | 'stream' | 'signal'> & { model?: string }

/** Options of the module-level `countTokens`: the model and request fields such as `tools`. */
export type CountTokensOptions = Omit<ChatCompletionCreateParamsBase, 'model' | 'messages' | 'stream' | 'signal'> & {
  /** Default `openai/gpt-4o`. */
  model?: string
}

/**
 * Tokens of a text, or of a chat prompt (`messages`) as `options.model` bills it
 * (message overhead, names, `tools`, images). Exact for OpenAI encodings, a calibrated
 * estimate elsewhere. Counted off the main thread.
 */
export declare function countTokens(input: string | ChatCompletionMessageParam[], options?: CountTokensOptions): Promise<number>
/** {@link countTokens} on the calling thread (blocks it: small inputs only). */
export declare function countTokensSync(input: string | ChatCompletionMessageParam[], options?: CountTokensOptions): number
/** Cost of a request before calling, with the built-in price catalog. Off the main thread. */
export declare function estimateCost(body: RequestBody & { model: string }): Promise<CostEstimate>
/** {@link estimateCost} on the calling thread. */
export declare function estimateCostSync(body: RequestBody & { model: string }): CostEstimate
/** Cost of a finished call from its `usage`, with the built-in price catalog. */
export declare function cost(
  usage: Partial<CompletionUsage> & { prompt_tokens: number; completion_tokens: number },
  options: { model: string; batch?: boolean; cacheWrite1h?: boolean },
): Cost

// ---------------------------------------------------------------- client

export interface Completions {
  create(body: ChatCompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<ChatCompletion>
  create(body: ChatCompletionCreateParamsStreaming, options?: RequestOptions): Promise<Stream>
  create(body: ChatCompletionCreateParamsBase, options?: RequestOptions): Promise<ChatCompletion | Stream>
}

/**
 * The client. Calls never block the event loop (network waits run in Rust on tokio);
 * one client is meant to be shared by all concurrent calls.
 */
export declare class GateRouter {
  /** Throws a {@link ConfigError} naming the field and the fix when the config is wrong. */
  constructor(options?: ClientOptions)
  readonly chat: { readonly completions: Completions }
  /** Where a request would go, and why, without calling anything. */
  route(body: RequestBody): RouteDecision
  /** Prompt tokens as the model (`auto`: the routed model) bills them; off the main thread. */
  countTokens(body: RequestBody): Promise<PromptCount>
  /** Expected and maximum cost before the call, with this client's prices; off the main thread. */
  estimateCost(body: RequestBody): Promise<CostEstimate>
  /**
   * Wait until every usage record so far is resolved by the collector (default at most
   * 10 s). New refusal reasons are emitted once each with `process.emitWarning` (code
   * `GATEROUTER_USAGE_REFUSED`).
   */
  flush(options?: { timeoutMs?: number }): Promise<DeliveryReport>
  /** The same report as `flush()`, now, without waiting. */
  usageStatus(): DeliveryReport
  /**
   * Outcome feedback: say how good a call's answer was. `recordId` is the call's
   * `usage_record_id` (on the response; on a stream's last chunk, and `stream.usageRecordId`);
   * `score` goes from 0 (useless) to 1 (right), e.g. 1/0 for thumbs up/down.
   *
   * Synchronous: the feedback is validated, signed and appended to the usage spool, then
   * delivered with the usage records (same batches; `flush()` counts it in `delivered`).
   * The collector joins it to the call (the `outcomes` analytics report). Returns the
   * feedback's own id.
   *
   * Throws {@link InvalidRequestError} (`code` `INVALID_REQUEST`) whose `field` names
   * `score`, `record_id`, `label`, `source` or `tags`; {@link ConfigError} when usage
   * records are off (there is no record to join).
   */
  feedback(recordId: string, score: number, options?: FeedbackOptions): string
  /**
   * Close the client: later calls reject with {@link ClientClosedError}; calls and
   * streams still in flight after `graceMs` (default 0) are aborted; then the usage
   * spool is drained (bounded by `reporting.shutdown_timeout_ms`) and the connection
   * pool released, so the process can exit on its own. Resolves to the
   * {@link DeliveryReport} (as `flush()`); a second call resolves to the first one's.
   * Throws {@link InvalidRequestError} (`field` `graceMs`) for a negative or non-number grace.
   */
  close(options?: { graceMs?: number }): Promise<DeliveryReport>
}

export default GateRouter

/** Version of the Rust core inside the native addon. */
export declare function coreVersion(): string
