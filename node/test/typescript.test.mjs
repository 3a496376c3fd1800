// The hand-written index.d.ts / index.d.mts are checked by compiling the examples with
// the locally installed TypeScript in strict mode (CommonJS-style .ts and ESM .mts).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)
const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')

async function typecheck(...args) {
  try {
    await run(process.execPath, [tsc, '--strict', '--noEmit', ...args], { cwd: PKG })
  } catch (e) {
    assert.fail(`tsc ${args.join(' ')} failed:\n${e.stdout}${e.stderr}`)
  }
}

test('examples/basic.ts compiles with tsc --strict --noEmit', { timeout: 120_000 }, async () => {
  await typecheck('examples/basic.ts')
})

test('examples/esm.mts compiles against the ESM types (nodenext)', { timeout: 120_000 }, async () => {
  await typecheck('--module', 'nodenext', '--moduleResolution', 'nodenext', 'examples/esm.mts')
})

test('the types reject a misuse (the check is not vacuous)', { timeout: 120_000 }, async () => {
  // A stream used as a completion must not compile. The file lives inside the package
  // so that `'gaterouter'` resolves to it by self-reference.
  const dir = await mkdtemp(path.join(PKG, '.tsc-'))
  const file = path.join(dir, 'misuse.ts')
  await writeFile(
    file,
    `import GateRouter, { countTokens } from 'gaterouter'
export async function f(): Promise<string | null> {
  const s = await new GateRouter().chat.completions.create({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'x' }], stream: true })
  return s.choices[0].message.content
}
export function g(client: GateRouter): number {
  const n: number = countTokens('not awaited')
  return n + client.route({ messages: [] }).estimated_prompt_tokens
}
export function h(client: GateRouter): string {
  return client.feedback('0193c1f0-7a2b-7c3d-8e4f-5a6b7c8d9e0f', 1, { source: 'robot' })
}
`,
  )
  try {
    const e = await run(process.execPath, [tsc, '--strict', '--noEmit', file], { cwd: PKG }).then(
      () => assert.fail('misuse compiled'),
      (err) => err,
    )
    assert.match(e.stdout, /Property 'choices' does not exist on type 'Stream'/)
    // countTokens returns a Promise; helpers' results are camelCase.
    assert.match(e.stdout, /Type 'Promise<number>' is not assignable to type 'number'/)
    assert.match(e.stdout, /Property 'estimated_prompt_tokens' does not exist on type 'RouteDecision'/)
    // A feedback source outside user/evaluator/implicit.
    assert.match(e.stdout, /Type '"robot"' is not assignable to type 'FeedbackSource/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
