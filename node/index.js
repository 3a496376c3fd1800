'use strict'
// gaterouter for Node.js: the OpenAI Node SDK's shape over the Rust core.
//
// Requests cross into Rust as JSON text and answers come back as JSON text (an outcome
// envelope, see src/lib.rs), so the core's serde types are the one definition of every
// field. This file only builds the request, parses the envelope and wires AbortSignals.
// Chat requests and responses keep the OpenAI wire names (snake_case); the results of the
// helpers (route, countTokens, estimateCost, cost, flush) are camelCased here;
// `feedback` returns the feedback's id (a string).

const native = require('./native.js')

/** Base class of every GateRouter error; `code` is the stable kind code. */
class GateRouterError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, retryAfter?: number, provider?: string, status?: number,
   *          providerMessage?: string, field?: string, rule?: string, level?: string,
   *          budget?: object}} [info]
   * @param {ErrorOptions} [options]
   */
  constructor(message, info = {}, options) {
    super(message, options)
    this.name = new.target.name
    this.code = info.code ?? 'UNKNOWN'
    this.retryAfter = info.retryAfter ?? null
    this.provider = info.provider ?? null
    this.status = info.status ?? null
    this.providerMessage = info.providerMessage ?? null
    this.field = info.field ?? null
    this.rule = info.rule ?? null
    this.level = info.level ?? null
    this.budget = info.budget ?? null
  }
}

class ConfigError extends GateRouterError {}
class AuthenticationError extends GateRouterError {}
class RateLimitError extends GateRouterError {}
class ProviderUnavailableError extends GateRouterError {}
class InvalidRequestError extends GateRouterError {}
class ContextLengthExceededError extends InvalidRequestError {}
class APITimeoutError extends GateRouterError {}
class StreamInterruptedError extends GateRouterError {}
class InvalidResponseError extends GateRouterError {}
class BudgetExceededError extends GateRouterError {}
class PermissionDeniedError extends GateRouterError {}
class ClientClosedError extends GateRouterError {}

/** Thrown when an AbortSignal (or `stream.controller.abort()`) cancels a call. */
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options) {
    super(message, options)
    this.name = 'AbortError'
    this.code = 'ABORT_ERR'
  }
}

/** Error code (the core's `ErrorKind::code`) -> class. Unknown codes get the base class. */
const ERROR_CLASSES = {
  CONFIG: ConfigError,
  AUTH: AuthenticationError,
  RATE_LIMITED: RateLimitError,
  PROVIDER_UNAVAILABLE: ProviderUnavailableError,
  INVALID_REQUEST: InvalidRequestError,
  CONTEXT_LENGTH_EXCEEDED: ContextLengthExceededError,
  TIMEOUT: APITimeoutError,
  STREAM_INTERRUPTED: StreamInterruptedError,
  INVALID_RESPONSE: InvalidResponseError,
  BUDGET_EXCEEDED: BudgetExceededError,
  PERMISSION_DENIED: PermissionDeniedError,
  CLIENT_CLOSED: ClientClosedError,
}

function toError(info, signal) {
  if (info.code === 'ABORTED') return abortError(signal)
  const Cls = ERROR_CLASSES[info.code] ?? GateRouterError
  return new Cls(info.message, info)
}

function abortError(signal) {
  const reason = signal && signal.reason
  return new AbortError('The operation was aborted', reason !== undefined ? { cause: reason } : undefined)
}

/** Parse an outcome envelope: return the `ok` payload or throw the mapped error. */
function unwrap(text, signal) {
  const outcome = JSON.parse(text)
  if (outcome.error !== undefined) throw toError(outcome.error, signal)
  return outcome.ok
}

/** `snake_case` -> `camelCase` for every object key, recursively (helpers' results). */
function camelize(value) {
  if (Array.isArray(value)) return value.map(camelize)
  if (value === null || typeof value !== 'object') return value
  const out = {}
  for (const [key, v] of Object.entries(value)) {
    out[key.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase())] = camelize(v)
  }
  return out
}

/** Default model of the module-level counters (as in the Python package). */
const DEFAULT_COUNT_MODEL = 'openai/gpt-4o'

/** Keys of the body that steer the call rather than travel to the provider. */
const LOCAL_KEYS = new Set(['stream', 'signal', 'stream_options'])

function requestJson(body) {
  if (body === null || typeof body !== 'object') {
    throw new InvalidRequestError('create() takes one object: {model, messages, ...}', { code: 'INVALID_REQUEST' })
  }
  const out = {}
  for (const [key, value] of Object.entries(body)) {
    // `null` means "not set", as in the OpenAI SDK; `undefined` is dropped by JSON anyway.
    // `stream_options` is accepted and ignored: usage always arrives on the last chunk.
    if (value === null || value === undefined || LOCAL_KEYS.has(key)) continue
    out[key] = value
  }
  return JSON.stringify(out)
}

/** A signal that fires when either given signal does (either may be absent). */
function anySignal(a, b) {
  if (!a) return b
  if (!b) return a
  if (typeof AbortSignal.any === 'function') return AbortSignal.any([a, b])
  const ctrl = new AbortController()
  const fire = (s) => () => ctrl.abort(s.reason)
  if (a.aborted || b.aborted) ctrl.abort((a.aborted ? a : b).reason)
  else {
    a.addEventListener('abort', fire(a), { once: true })
    b.addEventListener('abort', fire(b), { once: true })
  }
  return ctrl.signal
}

/**
 * Race `promise` against `signal`: on abort, call `onAbort` (which cancels the native
 * work) and reject with an AbortError once the native promise has settled.
 */
function withSignal(promise, signal, onAbort) {
  if (!signal) return promise
  if (signal.aborted) {
    onAbort()
    return Promise.reject(abortError(signal))
  }
  return new Promise((resolve, reject) => {
    // On abort, reject only once the native call has unwound: its `cancelled` usage
    // record is then in the spool, so a `flush()` right after the AbortError delivers it.
    // (The native side picks cancellation first, so this is prompt.)
    let aborted = false
    const abort = () => {
      aborted = true
      onAbort()
    }
    signal.addEventListener('abort', abort, { once: true })
    const settle = (ok, v) => {
      signal.removeEventListener('abort', abort)
      if (aborted) reject(abortError(signal))
      else if (ok) resolve(v)
      else reject(v)
    }
    promise.then(
      (v) => settle(true, v),
      (e) => settle(false, e),
    )
  })
}

/**
 * Async iterable of chat completion chunks (`for await (const chunk of stream)`).
 * `usage` holds the final usage and `usageRecordId` the call's usage record id once the
 * last chunk has been read.
 */
class Stream {
  /** `first` is the already-read first chunk, or `null` when the stream was empty. */
  constructor(nativeStream, first, signal) {
    this._native = nativeStream
    this._first = first
    this._done = false
    /** Aborting it stops the stream and drops the connection (as in the OpenAI SDK). */
    this.controller = new AbortController()
    this._signal = anySignal(signal, this.controller.signal)
    this._onAbort = () => this._native.close()
    this._signal.addEventListener('abort', this._onAbort, { once: true })
    /** Final token usage; set after the last chunk. */
    this.usage = null
    /** The call's usage record id (for `client.feedback`); set after the last chunk. */
    this.usageRecordId = null
  }

  async _next() {
    if (this._done) return { done: true, value: undefined }
    let chunk
    if (this._first !== undefined) {
      chunk = this._first
      this._first = undefined
    } else {
      try {
        const text = await withSignal(this._native.next(), this._signal, () => this._native.close())
        chunk = text === null ? null : unwrap(text, this._signal)
      } catch (e) {
        this._finish()
        throw e
      }
    }
    if (chunk === null) {
      this._finish()
      return { done: true, value: undefined }
    }
    if (chunk.usage) this.usage = chunk.usage
    if (chunk.usage_record_id) this.usageRecordId = chunk.usage_record_id
    return { done: false, value: chunk }
  }

  _finish() {
    if (this._done) return
    this._done = true
    this._signal.removeEventListener('abort', this._onAbort)
    this._native.close()
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => this._next(),
      // `break` out of `for await`: stop reading and drop the connection.
      return: async () => {
        this._finish()
        return { done: true, value: undefined }
      },
    }
  }

  /** Stop reading and drop the connection. */
  async close() {
    this._finish()
  }
}

/** `client.chat.completions`. */
class Completions {
  constructor(client) {
    this._client = client
  }

  /**
   * Create a chat completion (OpenAI Node SDK shape). With `stream: true` it resolves to
   * a {@link Stream} once the provider has answered (errors opening it reject here).
   * `signal` may be given in the body or, as in the OpenAI SDK, in `options`.
   */
  create(body, options = {}) {
    const client = this._client
    const signal = anySignal(body && body.signal, options && options.signal)
    let json
    try {
      json = requestJson(body)
      client._checkOpen()
    } catch (e) {
      return Promise.reject(e)
    }
    if (signal && signal.aborted) return Promise.reject(abortError(signal))
    return body.stream ? client._stream(json, signal) : client._chat(json, signal)
  }
}

/**
 * The GateRouter client: `new GateRouter({ config })`, `new GateRouter({ configFile })`
 * or `new GateRouter()` (built-in providers, API keys from the environment).
 */
class GateRouter {
  constructor(options = {}) {
    const { config, configFile, ...rest } = options ?? {}
    const unknown = Object.keys(rest)
    if (unknown.length > 0) {
      throw new ConfigError(
        `unknown option(s) ${unknown.join(', ')}: new GateRouter() takes { config } or { configFile }`,
        { code: 'CONFIG', field: unknown[0] },
      )
    }
    try {
      this._native = new native.NativeClient(
        config === undefined || config === null ? undefined : JSON.stringify(config),
        configFile === undefined || configFile === null ? undefined : String(configFile),
      )
    } catch (e) {
      // The constructor throws with the error envelope as its message (see src/lib.rs).
      let outcome
      try {
        outcome = JSON.parse(e.message)
      } catch {
        throw e
      }
      throw toError(outcome.error)
    }
    this._closed = false
    this.chat = { completions: new Completions(this) }
  }

  _checkOpen() {
    if (this._closed) {
      throw new ClientClosedError('the client is closed: create a new GateRouter', { code: 'CLIENT_CLOSED' })
    }
  }

  async _chat(json, signal) {
    const call = this._native.newCall()
    const text = await withSignal(this._native.chat(json, call), signal, () => call.cancel())
    const out = unwrap(text, signal)
    this._surfaceRefusals()
    return out
  }

  /**
   * Refusal reasons the core saw for the first time become one `process.emitWarning`
   * each (code `GATEROUTER_USAGE_REFUSED`): shown on stderr by default, never per record.
   */
  _surfaceRefusals(closing = false) {
    if (this._closed && !closing) return
    for (const reason of unwrap(this._native.takeRefusalWarnings())) {
      process.emitWarning(
        `the collector refused usage records: ${reason} (they are in the spool's dead-letter file; see client.usageStatus() or \`gaterouter spool status\`)`,
        { type: 'GateRouterWarning', code: 'GATEROUTER_USAGE_REFUSED' },
      )
    }
  }

  async _stream(json, signal) {
    const nativeStream = this._native.stream(json)
    // Read the first chunk now, so that errors opening the stream reject `create()` as
    // in the OpenAI SDK, rather than surfacing in the first iteration.
    let first
    try {
      const text = await withSignal(nativeStream.next(), signal, () => nativeStream.close())
      first = text === null ? null : unwrap(text, signal)
    } catch (e) {
      nativeStream.close()
      throw e
    }
    return new Stream(nativeStream, first, signal)
  }

  /** A body for the helpers: `model` defaults to `auto` (the routed model). */
  _helperJson(body) {
    this._checkOpen()
    if (body === null || typeof body !== 'object') {
      throw new InvalidRequestError('takes one object: {model?, messages, tools?, ...}', { code: 'INVALID_REQUEST' })
    }
    return requestJson(body.model === undefined || body.model === null ? { ...body, model: 'auto' } : body)
  }

  /**
   * Where a request would go, and why, without calling anything (`model` defaults to
   * `auto`): `{mode, score, tier, chosen, candidates, reason, ...}`. CPU only, so
   * synchronous.
   */
  route(body) {
    return camelize(unwrap(this._native.route(this._helperJson(body))))
  }

  /**
   * Prompt tokens of a request as its model (`auto`: the routed model) bills them:
   * `{tokens, exact, breakdown}`. Counted off the main thread.
   */
  async countTokens(body) {
    return camelize(unwrap(await this._native.countTokens(this._helperJson(body))))
  }

  /**
   * Cost before the call with this client's catalog: `expected.totalMicros` (expected
   * completion) and `max.totalMicros` (`max_tokens`). Computed off the main thread.
   */
  async estimateCost(body) {
    return camelize(unwrap(await this._native.estimateCost(this._helperJson(body))))
  }

  /**
   * Wait until every usage record so far is resolved by the collector (at most
   * `timeoutMs`, default 10 s) and report `{drained, delivered, pending, refused,
   * refusals, lastRefusal, oldestPendingAgeMs, ...}`. `drained` counts refused records as
   * resolved: check `refused`. New refusal reasons are also emitted as warnings.
   */
  async flush(options = {}) {
    this._checkOpen()
    const timeoutMs = options?.timeoutMs ?? 10_000
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) {
      throw new InvalidRequestError(`flush(): timeoutMs must be a number >= 0, got ${timeoutMs}`, { code: 'INVALID_REQUEST', field: 'timeoutMs' })
    }
    const report = camelize(unwrap(await this._native.flush(timeoutMs)))
    this._surfaceRefusals()
    return report
  }

  /**
   * Say how good a call's answer was: `recordId` is the response's `usage_record_id`
   * (a stream's last chunk carries it too, and `stream.usageRecordId` after the loop),
   * `score` goes from 0 (useless) to 1 (right). Options: `label` (a short word from your
   * app's vocabulary, never the answer's text), `source` (`user` by default,
   * `evaluator`, `implicit`), `tags` (string values). The feedback is a signed record,
   * spooled synchronously and delivered with the usage records (same batches, counted
   * by `flush()`); returns its own id. Throws `InvalidRequestError` whose `field` names
   * `score`, `record_id`, `label`, `source` or `tags`; `ConfigError` when usage records
   * are off.
   */
  feedback(recordId, score, options = {}) {
    this._checkOpen()
    const bad = (field, message) => new InvalidRequestError(`feedback(): ${message}`, { code: 'INVALID_REQUEST', field })
    if (typeof recordId !== 'string') {
      throw bad('record_id', `recordId must be a string (the response's usage_record_id), got ${recordId === null ? 'null' : typeof recordId}`)
    }
    if (typeof score !== 'number') {
      throw bad('score', `score must be a number between 0 and 1, got ${score === null ? 'null' : typeof score}`)
    }
    if (options === null || options === undefined) options = {}
    if (typeof options !== 'object') throw bad('options', 'options must be an object: { label?, source?, tags? }')
    const { label, source, tags, ...rest } = options
    const unknown = Object.keys(rest)
    if (unknown.length > 0) {
      throw bad(unknown[0], `unknown option(s) ${unknown.join(', ')}: feedback() takes { label, source, tags }`)
    }
    for (const [field, value] of [['label', label], ['source', source]]) {
      if (value !== undefined && value !== null && typeof value !== 'string') {
        throw bad(field, `${field} must be a string, got ${typeof value}`)
      }
    }
    if (tags !== undefined && tags !== null && (typeof tags !== 'object' || Array.isArray(tags))) {
      throw bad('tags', 'tags must be an object of string values')
    }
    return unwrap(
      this._native.feedback(
        recordId,
        score,
        label ?? undefined,
        source ?? undefined,
        tags === undefined || tags === null ? undefined : JSON.stringify(tags),
      ),
    )
  }

  /** The same report as {@link flush}, now, without waiting. */
  usageStatus() {
    this._checkOpen()
    const report = camelize(unwrap(this._native.usageStatus()))
    this._surfaceRefusals()
    return report
  }

  /**
   * Close the client: later calls reject with `ClientClosedError`; calls and streams
   * still in flight after `graceMs` (default 0) are aborted; then the usage spool is
   * drained to the collector (bounded by `reporting.shutdown_timeout_ms`) and the
   * connection pool released, so the process can exit on its own. Resolves to the
   * `DeliveryReport` (as `flush()`); a second call resolves to the first one's.
   */
  async close(options = {}) {
    const graceMs = options?.graceMs ?? 0
    if (typeof graceMs !== 'number' || !(graceMs >= 0)) {
      throw new InvalidRequestError(`close(): graceMs must be a number >= 0, got ${graceMs}`, { code: 'INVALID_REQUEST', field: 'graceMs' })
    }
    const first = !this._closed
    this._closed = true
    const report = camelize(unwrap(await this._native.close(graceMs)))
    // Refusals seen while draining warn too (once each, like every other refusal).
    if (first) this._surfaceRefusals(true)
    return report
  }
}

/** `{model, messages, ...options}` for the module-level counters. */
function countBody(messages, options) {
  const { model, ...rest } = options ?? {}
  return requestJson({ ...rest, model: model ?? DEFAULT_COUNT_MODEL, messages })
}

function badCountInput(input) {
  return new InvalidRequestError(
    `countTokens() takes a string or an array of messages, got ${input === null ? 'null' : typeof input}`,
    { code: 'INVALID_REQUEST' },
  )
}

/**
 * Tokens of a text, or of a chat request's prompt as `options.model` (default
 * `openai/gpt-4o`) bills it: message overhead, names, `tools` definitions and images
 * included. Exact for OpenAI encodings, a calibrated estimate elsewhere. Counted off
 * the main thread, so a large input never blocks the event loop.
 */
async function countTokens(input, options = {}) {
  if (typeof input === 'string') {
    return unwrap(await native.countText(input, options?.model ?? DEFAULT_COUNT_MODEL)).tokens
  }
  if (!Array.isArray(input)) throw badCountInput(input)
  return unwrap(await native.countRequest(countBody(input, options))).tokens
}

/** {@link countTokens} on the calling thread: for small inputs and scripts. */
function countTokensSync(input, options = {}) {
  if (typeof input === 'string') {
    return unwrap(native.countTextSync(input, options?.model ?? DEFAULT_COUNT_MODEL)).tokens
  }
  if (!Array.isArray(input)) throw badCountInput(input)
  return unwrap(native.countRequestSync(countBody(input, options))).tokens
}

function estimateBody(body) {
  if (body === null || typeof body !== 'object' || typeof body.model !== 'string') {
    throw new InvalidRequestError('estimateCost() takes {model, messages, ...}; `model` is required', { code: 'INVALID_REQUEST', field: 'model' })
  }
  return requestJson(body)
}

/**
 * Cost of a request before calling, with the built-in price catalog:
 * `expected.totalMicros` (expected completion) and `max.totalMicros` (`max_tokens`),
 * integer micro-dollars. Computed off the main thread.
 */
async function estimateCost(body) {
  return camelize(unwrap(await native.estimateCost(estimateBody(body))))
}

/** {@link estimateCost} on the calling thread. */
function estimateCostSync(body) {
  return camelize(unwrap(native.estimateCostSync(estimateBody(body))))
}

/**
 * Cost of a finished call from its `usage` (a response's `usage` object), with the
 * built-in price catalog: `{totalMicros, inputMicros, ..., pricedAs}`.
 */
function cost(usage, options = {}) {
  const { model, batch = false, cacheWrite1h = false } = options ?? {}
  if (typeof model !== 'string') {
    throw new InvalidRequestError('cost(usage, { model }): `model` (provider/model) is required', { code: 'INVALID_REQUEST', field: 'model' })
  }
  if (usage === null || typeof usage !== 'object') {
    throw new InvalidRequestError('cost(): `usage` must be an object such as a response\'s usage', { code: 'INVALID_REQUEST', field: 'usage' })
  }
  return camelize(unwrap(native.cost(JSON.stringify(usage), model, Boolean(batch), Boolean(cacheWrite1h))))
}

module.exports = {
  GateRouter,
  default: GateRouter,
  Stream,
  GateRouterError,
  ConfigError,
  AuthenticationError,
  RateLimitError,
  ProviderUnavailableError,
  InvalidRequestError,
  ContextLengthExceededError,
  APITimeoutError,
  StreamInterruptedError,
  InvalidResponseError,
  BudgetExceededError,
  PermissionDeniedError,
  ClientClosedError,
  AbortError,
  countTokens,
  countTokensSync,
  estimateCost,
  estimateCostSync,
  cost,
  coreVersion: native.coreVersion,
}
