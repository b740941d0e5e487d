import { execFileSync } from 'node:child_process'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { cleanup, consumerProject, specOf, tempDir, writeSpec } from './helpers'

const root = resolve(__dirname, '..')
const name = '@helios-project/worker-runtime'
let project: string
let spec: string

beforeAll(() => {
  // A consumer project that finds the package by name, as an install would lay it out.
  project = tempDir('hwr-consumer-')
  mkdirSync(join(project, 'node_modules', '@helios-project'), { recursive: true })
  symlinkSync(root, join(project, 'node_modules', '@helios-project', 'worker-runtime'), 'dir')
  spec = writeSpec(project, specOf(`echo consumer`))
})
afterAll(cleanup)

function runNode(file: string, source: string): unknown {
  writeFileSync(join(project, file), source)
  return JSON.parse(execFileSync(process.execPath, [file], { cwd: project, encoding: 'utf8' }))
}

describe('as a dependency', () => {
  it('works with ESM import', () => {
    const out = runNode(
      'esm.mjs',
      `import { WorkerRuntime, parseCommand } from '${name}'
       const result = await new WorkerRuntime({ workspaceDir: 'ws' }).run(${JSON.stringify(spec)}, 0)
       console.log(JSON.stringify({ result, parsed: parseCommand('a "b c"') }))`,
    )
    expect(out).toMatchObject({ result: { exitCode: 0, stdout: 'consumer\n' }, parsed: { command: 'a', args: ['b c'] } })
  })

  it('works with CommonJS require', () => {
    const out = runNode(
      'cjs.cjs',
      `const { WorkerRuntime } = require('${name}')
       new WorkerRuntime({ workspaceDir: 'ws' }).run(${JSON.stringify(spec)}, 0)
         .then((result) => console.log(JSON.stringify(result)))`,
    )
    expect(out).toMatchObject({ exitCode: 0, stdout: 'consumer\n' })
  })

  it('type-checks a consumer written like the infrastructure package, with no casts', () => {
    const { source, typecheck } = consumerProject(project, name)
    expect(source).not.toMatch(/ as (unknown|any)\b/)
    expect(typecheck()).toBe('')
    // The check can fail: a wrong type is caught.
    expect(typecheck('\nexport const wrong: string = 0 as number\n')).toMatch(/TS2322/)
  }, 600_000)
})
