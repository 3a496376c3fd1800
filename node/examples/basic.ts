// A tour of the gaterouter Node API. Type-checked by the test suite with
// `tsc --strict --noEmit` (see test/typescript.test.mjs); run it with a TypeScript
// runner after `npm install gaterouter` and with OPENAI_API_KEY / ANTHROPIC_API_KEY set.
import GateRouter, {
  GateRouterError,
  RateLimitError,
  cost,
  countTokens,
  countTokensSync,
  estimateCost,
  type ChatCompletion,
  type Cost,
  type CostEstimate,
  type FlushResult,
  type PromptCount,
  type RouteDecision,
  type ChatCompletionMessageParam,
  type ChatCompletionTool,
  type CompletionUsage,
  type FeedbackOptions,
  type Stream,
} from 'gaterouter'

const weather: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}

export async function main(): Promise<void> {
  // Built-in providers, API keys from the environment. Or:
  //   new GateRouter({ configFile: 'gaterouter.toml' })
  //   new GateRouter({ config: { providers: { openai: { api_key_env: 'MY_KEY' } } } })
  const client = new GateRouter({ config: { retry: { max_retries: 3 }, timeouts: { request_ms: 30_000 } } })
  try {
    // 1. One call, OpenAI shape.
    const completion: ChatCompletion = await client.chat.completions.create({
      model: 'anthropic/claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'Why is the sky blue?' }],
      max_tokens: 200,
    })
    const text: string | null = completion.choices[0]?.message.content ?? null
    console.log(text, completion.usage.total_tokens)

    // 2. Streaming: chunks as they come, usage at the end.
    const stream = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Tell a short fox story' }],
      stream: true,
    })
    for await (const chunk of stream) {
      const piece: string | undefined = chunk.choices[0]?.delta.content
      if (piece) console.log(piece)
    }
    const usage: CompletionUsage | null = stream.usage
    console.log('tokens:', usage?.total_tokens)

    // 3. Tools: the reply's message goes back into the conversation as is.
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }]
    const first = await client.chat.completions.create({ model: 'gemini/gemini-2.5-flash', messages, tools: [weather] })
    const call = first.choices[0]?.message.tool_calls?.[0]
    if (call) {
      const args = JSON.parse(call.function.arguments) as { city: string }
      messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: `18C in ${args.city}` })
      const second = await client.chat.completions.create({ model: 'gemini/gemini-2.5-flash', messages, tools: [weather] })
      console.log(second.choices[0]?.message.content)
    }

    // 4. Cancellation: an AbortSignal drops the provider request.
    try {
      await client.chat.completions.create(
        { model: 'deepseek/deepseek-chat', messages: [{ role: 'user', content: 'Write a long essay' }] },
        { signal: AbortSignal.timeout(2_000) },
      )
    } catch (err) {
      if (err instanceof Error && err.name === 'AbortError') console.log('gave up after 2 s')
      else throw err
    }
  } catch (err) {
    // 5. Typed errors: a stable `code`, and the provider's details.
    if (err instanceof RateLimitError) {
      console.log(`rate limited by ${err.provider}; retry in ${err.retryAfter ?? '?'} s`)
    } else if (err instanceof GateRouterError) {
      console.log(err.code, err.status, err.providerMessage)
    } else {
      throw err
    }
  } finally {
    await client.close()
  }
}

// 6. Before a call: where `auto` goes, what the prompt costs; and usage records.
export async function plan(client: GateRouter, messages: ChatCompletionMessageParam[]): Promise<number> {
  const decision: RouteDecision = client.route({ messages })
  console.log(decision.chosen, decision.tier, decision.reason, decision.candidates[0]?.estimatedCostMicros)
  // Which router weights scored it; whether the organization's learning explored.
  console.log(decision.weightsVersion, decision.learning?.explored, decision.learning?.scoredTier)
  const count: PromptCount = await client.countTokens({ model: decision.chosen, messages })
  const estimate: CostEstimate = await client.estimateCost({ messages, max_tokens: 500 })
  console.log(count.tokens, count.exact, estimate.expected.totalMicros, estimate.max.totalMicros)
  const flushed: FlushResult = await client.flush({ timeoutMs: 5_000 })
  if (!flushed.drained) console.log(`${flushed.pending} records still spooled`)
  if (flushed.refused > 0) console.log(`${flushed.refused} records refused: ${flushed.lastRefusal}`)
  return count.breakdown.tools
}

// 7. Module-level helpers need no client.
export async function offline(usage: CompletionUsage): Promise<void> {
  const n: number = await countTokens('a long document ...', { model: 'anthropic/claude-sonnet-4-5' })
  const m: number = countTokensSync([{ role: 'user', content: 'hi' }], { tools: [weather] })
  const e: CostEstimate = await estimateCost({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
  const c: Cost = cost(usage, { model: 'openai/gpt-4o', batch: true })
  console.log(n, m, e.max.pricedAs, c.totalMicros / 1e6)
}

// 8. Outcome feedback: how good a call's answer was (needs usage records: `[reporting]`).
export function rate(client: GateRouter, completion: ChatCompletion, stream: Stream, helpful: boolean): string[] {
  const ids: string[] = []
  if (completion.usage_record_id !== undefined) {
    const opts: FeedbackOptions = { label: helpful ? 'thumbs_up' : 'thumbs_down', tags: { screen: 'chat' } }
    ids.push(client.feedback(completion.usage_record_id, helpful ? 1 : 0, opts))
  }
  // After the loop: the last chunk's `usage_record_id`.
  if (stream.usageRecordId !== null) ids.push(client.feedback(stream.usageRecordId, 0.8, { source: 'evaluator' }))
  return ids
}
