// A tour of the gaterouter Node API. Type-checked by the test suite with
// `tsc --strict --noEmit` (see test/typescript.test.mjs); run it with a TypeScript
// runner after `npm install gaterouter` and with OPENAI_API_KEY / ANTHROPIC_API_KEY set.
import GateRouter, {
  GateRouterError,
  RateLimitError,
  type ChatCompletion,
  type ChatCompletionMessageParam,
  type ChatCompletionTool,
  type CompletionUsage,
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
