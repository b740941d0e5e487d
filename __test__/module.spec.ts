import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { cleanup, specOf, tempDir, writeSpec } from './helpers'

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
    const consumer = readFileSync(join(__dirname, 'consumer.ts'), 'utf8').replace("'../index.js'", `'${name}'`)
    expect(consumer).not.toMatch(/ as (unknown|any)\b/)
    writeFileSync(join(project, 'consumer.ts'), consumer)
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          typeRoots: [join(root, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['consumer.ts'],
      }),
    )
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    // tsc prints its diagnostics on stdout.
    const typecheck = () => {
      try {
        execFileSync(process.execPath, [tsc, '-p', project], { cwd: project, encoding: 'utf8' })
        return ''
      } catch (e) {
        return String((e as { stdout?: string }).stdout ?? e)
      }
    }
    expect(typecheck()).toBe('')
    // The check can fail: a wrong type is caught.
    writeFileSync(join(project, 'consumer.ts'), `${consumer}\nexport const wrong: string = 0 as number\n`)
    expect(typecheck()).toMatch(/TS2322/)
  })
})
