// ESM flavour (`import` from an .mts / "type": "module" project): the default export is
// the client class. Type-checked by the test suite like basic.ts.
import GateRouter, { AbortError, countTokens, type ChatCompletionChunk, type Stream } from 'gaterouter'

/** Tokens of a prompt before sending it (counted off the main thread). */
export const promptTokens = (prompt: string): Promise<number> => countTokens(prompt, { model: 'openai/gpt-4o' })

export async function firstWords(prompt: string, signal?: AbortSignal): Promise<string> {
  const client = new GateRouter({ configFile: 'gaterouter.toml' })
  try {
    const stream: Stream = await client.chat.completions.create(
      { model: 'auto', messages: [{ role: 'user', content: prompt }], stream: true },
      { signal },
    )
    let text = ''
    for await (const chunk of stream as AsyncIterable<ChatCompletionChunk>) {
      text += chunk.choices[0]?.delta.content ?? ''
      if (text.length > 40) break
    }
    return text
  } catch (err) {
    if (err instanceof AbortError) return ''
    throw err
  } finally {
    await client.close()
  }
}
