// Per-job workspaces, the merge, the declared output and line mode: what a whole render on an
// engine needs beyond one chunk.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime } from '../index.js'
import { cleanup, sleep, tempDir, writeSpec } from './helpers'

// The CLI's view: the package and its lib/ loaded by Node's own require, as one instance.
const cjs = createRequire(__filename)
const { declaredOutputPath } = cjs('../lib/worker-runtime.js')
const { WorkerRuntime: RequiredRuntime } = cjs('../index.js') as { WorkerRuntime: typeof WorkerRuntime }

afterAll(cleanup)

const node = (script: string) => `node -e ${JSON.stringify(script)}`

/** Counts downloads per job; each writes the bundle after a pause, so runs overlap it. */
function countingStorage(failFirst = 0) {
  const calls: string[] = []
  return {
    calls,
    async downloadAssetBundle(jobId: string, _url: string, targetDir: string) {
      calls.push(jobId)
      await sleep(100)
      if (calls.length <= failFirst) throw new Error('bucket unreachable')
      writeFileSync(join(targetDir, 'bundle.txt'), `assets of ${jobId}`)
    },
  }
}

describe('perJobWorkspace', () => {
  it('runs each job in its own directory and downloads its assets once for concurrent runs', async () => {
    const dir = tempDir()
    const workspaceDir = join(dir, 'ws')
    const spec = (id: string) =>
      writeSpec(dir, { id, assetsUrl: 's3://b/a.zip', chunks: [0, 1, 2].map((i) => ({ id: i, command: `cp bundle.txt out-${i}` })) }, `${id}.json`)
    const [a, b] = [spec('job-a'), spec('job-b')]
    const storage = countingStorage()
    const runtime = new WorkerRuntime({ workspaceDir, storage, perJobWorkspace: true })
    const results = await Promise.all([0, 1, 2].flatMap((i) => [runtime.run(a, i), runtime.run(b, i)]))
    expect(results.map((r) => r.exitCode)).toEqual([0, 0, 0, 0, 0, 0])
    expect(storage.calls.sort()).toEqual(['job-a', 'job-b'])
    expect(readFileSync(join(workspaceDir, 'job-a', 'out-2'), 'utf8')).toBe('assets of job-a')
    expect(readFileSync(join(workspaceDir, 'job-b', 'out-0'), 'utf8')).toBe('assets of job-b')
    // A new runtime (as a Cloud Run server makes per request) finds the download done.
    await new WorkerRuntime({ workspaceDir, storage, perJobWorkspace: true }).run(a, 0)
    expect(storage.calls).toHaveLength(2)
  })

  it('finds a download another process finished, and tries a failed one again', async () => {
    const dir = tempDir()
    const workspaceDir = join(dir, 'ws')
    const path = writeSpec(dir, { id: 'job/7', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'cat bundle.txt' }] })
    const storage = countingStorage(1)
    const first = new WorkerRuntime({ workspaceDir, storage, perJobWorkspace: true })
    await expect(first.run(path, 0)).rejects.toThrow('bucket unreachable')
    expect((await first.run(path, 0)).stdout).toBe('assets of job/7')
    expect(storage.calls).toHaveLength(2)
    // Another Node process, as after a restart.
    const script = `const { WorkerRuntime } = require(${JSON.stringify(join(__dirname, '..'))});
      new WorkerRuntime({ workspaceDir: ${JSON.stringify(workspaceDir)}, perJobWorkspace: true,
        storage: { downloadAssetBundle() { throw new Error('downloaded again') } } })
        .run(${JSON.stringify(path)}, 0).then((r) => process.stdout.write(r.stdout))`
    const child = spawn(process.execPath, ['-e', script])
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const code = await new Promise((done) => child.on('close', done))
    expect({ code, out }).toEqual({ code: 0, out: 'assets of job/7' })
    // The id is made safe for a file name, and never collides with an id that was already safe.
    expect(readdirSync(workspaceDir)).toEqual([expect.stringMatching(/^job_7~[0-9a-f]{16}$/)])
  })

  it('keeps the lock while an aborted download that ignores its signal is still writing', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'cat bundle.txt' }] })
    let active = 0
    let most = 0
    let calls = 0
    const storage = {
      async downloadAssetBundle(_id: string, _url: string, targetDir: string) {
        const call = ++calls
        most = Math.max(most, ++active)
        await sleep(call === 1 ? 600 : 50) // the first one ignores its signal
        writeFileSync(join(targetDir, 'bundle.txt'), `download ${call}`)
        active--
      },
    }
    const runtime = new WorkerRuntime({ workspaceDir: join(dir, 'ws'), storage, perJobWorkspace: true })
    const controller = new AbortController()
    const first = runtime.run(path, 0, { signal: controller.signal })
    while (calls === 0) await sleep(10) // the download has started
    controller.abort()
    await expect(first).rejects.toMatchObject({ code: 'ABORT_ERR' })
    const second = await runtime.run(path, 0)
    // The second run waited for the first download to stop, then found it finished.
    expect(most).toBe(1)
    expect(second.stdout).toBe('download 1')
    expect(calls).toBe(1)
  })

  it('never gives a number id the directory of the same string id', async () => {
    const dir = tempDir()
    const workspaceDir = join(dir, 'ws')
    const runtime = new WorkerRuntime({ workspaceDir, perJobWorkspace: true })
    for (const id of [42, '42']) {
      const path = writeSpec(dir, { id, chunks: [{ id: 0, command: `touch from-${typeof id}` }] }, `${typeof id}.json`)
      expect((await runtime.run(path, 0)).exitCode).toBe(0)
    }
    const dirs = readdirSync(workspaceDir).sort()
    expect(dirs).toEqual(['42', expect.stringMatching(/^42~[0-9a-f]{16}$/)])
    expect(readdirSync(join(workspaceDir, '42'))).toEqual(['from-string'])
  })

  it('needs the spec to have an id', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { chunks: [{ id: 0, command: 'true' }] })
    const runtime = new WorkerRuntime({ workspaceDir: join(dir, 'ws'), perJobWorkspace: true })
    await expect(runtime.run(path, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_JOB_SPEC', message: expect.stringContaining('perJobWorkspace') })
  })

  it('is a boolean', () => {
    expect(() => new WorkerRuntime({ workspaceDir: '/tmp/x', perJobWorkspace: 'yes' as never })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    )
  })
})

describe('merge', () => {
  it("runs the spec's mergeCommand in the workspace, with the run options", async () => {
    const dir = tempDir()
    const workspaceDir = join(dir, 'ws')
    const path = writeSpec(dir, {
      id: 'j',
      chunks: [0, 1].map((id) => ({ id, outputFile: `part-${id}.txt`, command: node(`require('fs').writeFileSync('part-${id}.txt', '${id}')`) })),
      mergeCommand: node("const fs = require('fs'); fs.writeFileSync('all.txt', fs.readFileSync('part-0.txt', 'utf8') + fs.readFileSync('part-1.txt', 'utf8')); console.log('merged'); process.exit(4)"),
    })
    const runtime = new WorkerRuntime({ workspaceDir })
    await Promise.all([runtime.run(path, 0), runtime.run(path, 1)])
    const pieces: string[] = []
    const result = await runtime.merge(path, { onStdout: (line) => pieces.push(line), lines: true })
    expect(result.exitCode).toBe(4)
    expect(pieces).toEqual(['merged'])
    expect(readFileSync(join(workspaceDir, 'all.txt'), 'utf8')).toBe('01')
    expect(result.outputPath).toBeUndefined()
  })

  it('refuses a spec without a mergeCommand, and bad arguments', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { chunks: [] })
    const runtime = new WorkerRuntime({ workspaceDir: join(dir, 'ws') })
    await expect(runtime.merge(path)).rejects.toMatchObject({ code: 'ERR_INVALID_JOB_SPEC', message: 'Invalid JobSpec: no mergeCommand' })
    await expect(runtime.merge('')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    await expect(runtime.merge(path, { timeout: -1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
  })
})

describe('the declared outputFile', () => {
  it('is in the result when it exists, with its size', async () => {
    const dir = tempDir()
    const workspaceDir = join(dir, 'ws')
    const path = writeSpec(dir, {
      chunks: [
        { id: 0, outputFile: 'out/c0.bin', command: node("require('fs').mkdirSync('out'); require('fs').writeFileSync('out/c0.bin', 'abcd')") },
        { id: 1, outputFile: 'never.bin', command: 'true' },
        { id: 2, outputFile: 's3://bucket/c2.bin', command: 'true' },
        { id: 3, command: 'true' },
        { id: 4, outputFile: './a/../chunk-00:00:10.bin', command: node("require('fs').writeFileSync('chunk-00:00:10.bin', 'xy')") },
      ],
    })
    const runtime = new RequiredRuntime({ workspaceDir })
    const [made, missing, remote, none, colon] = await Promise.all([0, 1, 2, 3, 4].map((id) => runtime.run(path, id)))
    // A name with a colon is a file name, not a URL, and the path is shown plainly.
    expect(colon).toMatchObject({ outputPath: join(workspaceDir, 'chunk-00:00:10.bin'), outputBytes: 2 })
    expect(made).toMatchObject({ outputPath: join(workspaceDir, 'out/c0.bin'), outputBytes: 4 })
    expect(declaredOutputPath(made)).toBe(join(workspaceDir, 'out/c0.bin'))
    expect('outputPath' in missing || 'outputBytes' in missing).toBe(false)
    expect(declaredOutputPath(missing)).toBe(join(workspaceDir, 'never.bin'))
    for (const result of [remote, none]) {
      expect(result.outputPath).toBeUndefined()
      expect(declaredOutputPath(result)).toBeUndefined()
    }
  })
})

describe('lines: true', () => {
  it('delivers whole lines without their newline, and a last unterminated one at the end', async () => {
    const dir = tempDir()
    const script = "process.stdout.write('a'); setTimeout(() => { process.stdout.write('b\\r\\nc\\n\\nd'); process.stderr.write('e\\nf') }, 50)"
    const path = writeSpec(dir, { chunks: [{ id: 0, command: node(script) }] })
    const out: string[] = []
    const err: string[] = []
    const runtime = new WorkerRuntime({ workspaceDir: join(dir, 'ws'), lines: true, onStderr: (l) => err.push(`[chunk 0] ${l}`) })
    const result = await runtime.run(path, 0, { onStdout: (l) => out.push(l) })
    expect(out).toEqual(['ab', 'c', '', 'd'])
    expect(err).toEqual(['[chunk 0] e', '[chunk 0] f'])
    expect(result.stdout).toBe('ab\r\nc\n\nd')
    // A long line in many pieces arrives whole, and a last line's \r goes as a \r\n's does.
    const long = writeSpec(dir, { chunks: [{ id: 0, command: node("for (let i = 0; i < 200; i++) process.stdout.write('x'.repeat(10000)); process.stdout.write('\\r')") }] }, 'long.json')
    const got: string[] = []
    await runtime.run(long, 0, { onStdout: (l) => got.push(l) })
    expect(got.map((l) => l.length)).toEqual([2_000_000])
    // Without newlines, a stream comes in pieces of about maxBuffer (at least 1 MiB), not
    // whole at the end: raw output cannot fill memory.
    const raw = writeSpec(dir, { chunks: [{ id: 0, command: node("for (let i = 0; i < 300; i++) process.stdout.write('y'.repeat(10000)); process.stdout.write('\\nend\\n')") }] }, 'raw.json')
    const parts: string[] = []
    const rawResult = await runtime.run(raw, 0, { maxBuffer: 2 ** 20, onStdout: (l) => parts.push(l) })
    expect(parts.at(-1)).toBe('end')
    expect(parts.slice(0, -1).join('')).toBe('y'.repeat(3_000_000))
    expect(Math.max(...parts.map((l) => l.length))).toBeLessThanOrEqual(2 ** 20 + 64 * 1024)
    expect(rawResult.stdoutTruncated).toBe(true)
    // Pieces, as before, when it is off for the run.
    const pieces: string[] = []
    await runtime.run(path, 0, { lines: false, onStdout: (p) => pieces.push(p) })
    expect(pieces.join('')).toBe('ab\r\nc\n\nd')
  })

  it('is a boolean', async () => {
    const runtime = new WorkerRuntime({ workspaceDir: tempDir() })
    await expect(runtime.run('x.json', 0, { lines: 1 as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
  })
})
