import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import pkg from '../package.json'
import { cleanup, closeServers, existsSync, json, serve, sleep, specOf, tempDir, writeSpec } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const root = resolve(__dirname, '..')
const cli = join(root, 'bin', 'helios-worker.js')
const INDEX_VARIABLES = ['JOB_COMPLETION_INDEX', 'AWS_BATCH_JOB_ARRAY_INDEX', 'CLOUD_RUN_TASK_INDEX']

/** The environment without any engine's index variable, plus `extra`. */
function envWith(extra: Record<string, string> = {}) {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !INDEX_VARIABLES.includes(k) && k !== 'HELIOS_WORKSPACE_DIR') env[k] = v
  }
  return { ...env, ...extra }
}

function worker(args: string[], extra: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { env: envWith(extra), encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const dir = tempDir()
const spec = writeSpec(
  dir,
  specOf('echo chunk-0', 'sh -c "echo chunk-1; echo to-stderr >&2"', 'sh -c "exit 7"', 'sh -c "kill -KILL $$"', 'sleep 30', 'pwd'),
)

describe('helios-worker', () => {
  it('--help lists every option; --version prints the version', () => {
    const help = worker(['--help'])
    expect(help.code).toBe(0)
    for (const option of ['--workspace', '--timeout', '--json', '--help', '--version', ...INDEX_VARIABLES]) {
      expect(help.stdout).toContain(option)
    }
    expect(worker(['--version'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
  })

  it('runs the chunk given as an argument and streams its output', () => {
    expect(worker([spec, '1'])).toMatchObject({ code: 0, stdout: 'chunk-1\n', stderr: 'to-stderr\n' })
  })

  it('exits with the chunk exit code, 128 + signal, or 124 on timeout', () => {
    expect(worker([spec, '2']).code).toBe(7)
    expect(worker([spec, '3']).code).toBe(128 + 9)
    expect(worker([spec, '4', '--timeout', '200']).code).toBe(124)
  })

  it.each(INDEX_VARIABLES)('takes the chunk from %s', (name) => {
    expect(worker([spec], { [name]: '1' })).toMatchObject({ code: 0, stdout: 'chunk-1\n' })
  })

  it('lets an explicit argument win over the index variable', () => {
    expect(worker([spec, '0'], { JOB_COMPLETION_INDEX: '1' }).stdout).toBe('chunk-0\n')
  })

  it('accepts index variables that agree and refuses ones that disagree', () => {
    expect(worker([spec], { JOB_COMPLETION_INDEX: '1', CLOUD_RUN_TASK_INDEX: '1' }).code).toBe(0)
    const r = worker([spec], { JOB_COMPLETION_INDEX: '1', AWS_BATCH_JOB_ARRAY_INDEX: '2' })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('disagree: JOB_COMPLETION_INDEX=1, AWS_BATCH_JOB_ARRAY_INDEX=2')
  })

  it('refuses to guess a chunk: no index is a usage error, never chunk 0', () => {
    const r = worker([spec])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/no chunkId/)
    expect(r.stdout).toBe('')
  })

  it.each(['x', '-1', '1.5', ' '])('refuses the index value %j', (value) => {
    const r = worker([spec], { CLOUD_RUN_TASK_INDEX: value })
    if (value.trim() === '') {
      expect(r.code).toBe(2) // blank counts as not set: no index at all
    } else {
      expect(r).toMatchObject({ code: 2, stderr: expect.stringContaining('must be a non-negative integer') })
    }
  })

  it('refuses a bad chunkId argument and unknown options', () => {
    expect(worker([spec, 'one']).code).toBe(2)
    expect(worker([spec, '0', '--frobnicate']).code).toBe(2)
    expect(worker([]).code).toBe(2)
  })

  it('exits 1 with the message and code on any other failure', () => {
    const r = worker([join(dir, 'missing.json'), '0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("ENOENT: no such file or directory, open '")
    expect(r.stderr).toContain('(ENOENT)')
    expect(worker([spec, '99']).stderr).toContain('Chunk with ID 99 not found in job spec (ERR_CHUNK_NOT_FOUND)')
  })

  it('prints the result as one JSON line with --json', () => {
    const r = worker([spec, '0', '--json'])
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toBe('chunk-0')
    const result = JSON.parse(lines.at(-1)!)
    expect(result).toMatchObject({ chunkId: 0, exitCode: 0 })
    expect(result.durationMs).toBeGreaterThan(0)
    expect(result).not.toHaveProperty('stdout')
  })

  it('uses HELIOS_WORKSPACE_DIR, then a fresh temporary directory that it removes again', () => {
    const workspace = join(tempDir(), 'ws')
    expect(worker([spec, '5'], { HELIOS_WORKSPACE_DIR: workspace }).stdout.trim()).toBe(workspace)
    const fresh = worker([spec, '5']).stdout.trim()
    expect(fresh.startsWith(realpathSync(tmpdir())) || fresh.startsWith(tmpdir())).toBe(true)
    expect(existsSync(fresh), 'the workspace the CLI made for itself is gone').toBe(false)
    expect(existsSync(workspace), 'a workspace it was given is kept').toBe(true)
    expect(worker(['--workspace', workspace, spec, '5']).stdout.trim()).toBe(workspace)
  })

  it('on SIGTERM ends the chunk process group and exits 143', async () => {
    const work = tempDir()
    const marker = join(work, 'marker')
    writeFileSync(join(work, 'tree.sh'), `(trap '' TERM; sleep 2; touch '${marker}') &\necho started\nsleep 30\n`)
    const path = writeSpec(work, specOf(`sh ${join(work, 'tree.sh')}`))
    const child = spawn(process.execPath, [cli, path, '0'], { env: envWith(), stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolveStarted) => child.stdout.on('data', (d) => String(d).includes('started') && resolveStarted()))
    child.kill('SIGTERM')
    const code = await new Promise<number | null>((resolveExit) => child.on('exit', (c) => resolveExit(c)))
    expect(code).toBe(143)
    await sleep(2500)
    expect(existsSync(marker)).toBe(false)
  })
})

describe('fan-out, as an engine runs it', () => {
  const assets = join(root, 'demo', 'assets')
  const frames = 48
  const chunks = 4

  it('renders every chunk in parallel, each told its chunk by the index variable only, then merges', async () => {
    const variable = 'JOB_COMPLETION_INDEX'
    const out = tempDir()
    const perChunk = frames / chunks
    const job = {
      id: 'fan-out',
      chunks: Array.from({ length: chunks }, (_, id) => ({
        id,
        command: `node ${join(assets, 'render-chunk.mjs')} --start ${id * perChunk} --count ${perChunk} --total ${frames} --width 64 --height 36 --out ${join(out, `chunk-${id}.y4m`)}`,
      })),
    }
    const { url } = await serve({ '/job.json': json(job) })
    const codes = await Promise.all(
      job.chunks.map(
        (chunk) =>
          new Promise<number | null>((resolveExit) =>
            spawn(process.execPath, [cli, `${url}/job.json`], {
              env: envWith({ [variable]: String(chunk.id) }),
              stdio: 'ignore',
            }).on('exit', resolveExit),
          ),
      ),
    )
    expect(codes).toEqual([0, 0, 0, 0])
    const merged = join(out, 'merged.y4m')
    const merge = spawnSync(process.execPath, [join(assets, 'merge.mjs'), merged, ...job.chunks.map((c) => join(out, `chunk-${c.id}.y4m`))], { encoding: 'utf8' })
    expect(merge.status).toBe(0)
    // The same animation rendered in one piece is the reference.
    const whole = join(out, 'whole.y4m')
    spawnSync(process.execPath, [join(assets, 'render-chunk.mjs'), '--start', '0', '--count', String(frames), '--total', String(frames), '--width', '64', '--height', '36', '--out', whole])
    const bytes = readFileSync(merged)
    expect(bytes.toString('latin1').split('FRAME\n').length - 1).toBe(frames)
    expect(bytes.equals(readFileSync(whole))).toBe(true)
  })
})
