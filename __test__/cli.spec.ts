import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { openSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'

import pkg from '../package.json'
import { cleanup, closeServers, eventually, existsSync, json, serve, sleep, specOf, tempDir, writeSpec } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const root = resolve(__dirname, '..')
const cli = join(root, 'bin', 'helios-worker.js')
const INDEX_VARIABLES = ['JOB_COMPLETION_INDEX', 'AWS_BATCH_JOB_ARRAY_INDEX', 'CLOUD_RUN_TASK_INDEX', 'SLURM_ARRAY_TASK_ID']

/** The environment without any engine's index variable, plus `extra`. */
function envWith(extra: Record<string, string> = {}) {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !INDEX_VARIABLES.includes(k) && k !== 'HELIOS_WORKSPACE_DIR') env[k] = v
  }
  return { ...env, ...extra }
}

function worker(args: string[], extra: Record<string, string> = {}, cwd?: string) {
  const r = spawnSync(process.execPath, [cli, ...args], { env: envWith(extra), encoding: 'utf8', timeout: 60_000, cwd })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Writes `text` (default 'x') to `file` in the current directory, then exits with `code`. */
const writes = (file: string, text = 'x', code = 0) =>
  `node -e "require('fs').writeFileSync('${file}','${text}');process.exit(${code})"`

const dir = tempDir()
const spec = writeSpec(
  dir,
  specOf(
    'echo chunk-0',
    'sh -c "echo chunk-1; echo to-stderr >&2"',
    'sh -c "exit 7"',
    'sh -c "kill -KILL $$"',
    'sleep 30',
    'pwd',
    'sh -c "echo started; sleep 30"',
  ),
)

describe('helios-worker', () => {
  it('--help lists every option; --version prints the version', () => {
    const help = worker(['--help'])
    expect(help.code).toBe(0)
    for (const option of ['merge', '--workspace', '--per-job', '--timeout', '--json', '--help', '--version', './merge', ...INDEX_VARIABLES]) {
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

  it.skipIf(process.platform !== 'linux')('exits 124 when the timeout runs out before the command starts; refuses one past 2^31-1 ms', () => {
    const fifo = join(tempDir(), 'nobody-writes.json')
    execFileSync('mkfifo', [fifo])
    const early = worker([fifo, '0', '--timeout', '300'])
    expect(early.code).toBe(124)
    expect(early.stderr).toContain('loading the job spec; its command never started (ERR_RUN_TIMEOUT)')
    const far = worker([spec, '0', '--timeout', '2147483648'])
    expect(far).toMatchObject({ code: 2, stdout: '' })
    expect(far.stderr).toContain('--timeout must be at most 2147483647 (ms), got 2147483648')
  })

  it('exits 1, not 2 (a usage error), when it cannot make a workspace of its own', () => {
    const r = worker([spec, '0'], { TMPDIR: join(tempDir(), 'missing') })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^helios-worker: cannot make a workspace: ENOENT/)
  })

  it.each(INDEX_VARIABLES)('takes the chunk from %s', (name) => {
    expect(worker([spec], { [name]: '1' })).toMatchObject({ code: 0, stdout: 'chunk-1\n' })
  })

  it('lets an explicit argument win over the index variable', () => {
    expect(worker([spec, '0'], { JOB_COMPLETION_INDEX: '1' }).stdout).toBe('chunk-0\n')
    expect(worker([spec, '0'], { SLURM_ARRAY_TASK_ID: '1' })).toMatchObject({ code: 0, stdout: 'chunk-0\n' })
  })

  it('accepts index variables that agree and refuses ones that disagree', () => {
    expect(worker([spec], { JOB_COMPLETION_INDEX: '1', CLOUD_RUN_TASK_INDEX: '1' }).code).toBe(0)
    const r = worker([spec], { JOB_COMPLETION_INDEX: '1', AWS_BATCH_JOB_ARRAY_INDEX: '2' })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('disagree: JOB_COMPLETION_INDEX=1, AWS_BATCH_JOB_ARRAY_INDEX=2')
    expect(worker([spec], { SLURM_ARRAY_TASK_ID: '1', CLOUD_RUN_TASK_INDEX: '1' })).toMatchObject({ code: 0, stdout: 'chunk-1\n' })
    const slurm = worker([spec], { SLURM_ARRAY_TASK_ID: '0', JOB_COMPLETION_INDEX: '1' })
    expect(slurm).toMatchObject({ code: 2, stdout: '' })
    expect(slurm.stderr).toContain('disagree: JOB_COMPLETION_INDEX=1, SLURM_ARRAY_TASK_ID=0')
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
    const lines = r.stdout.split('\n')
    expect(lines).toHaveLength(3) // the chunk's line, the JSON line, and nothing after the last newline
    expect(lines[0]).toBe('chunk-0')
    expect(lines[2]).toBe('')
    const result = JSON.parse(lines[1])
    expect(result).toMatchObject({ chunkId: 0, exitCode: 0 })
    expect(result.durationMs).toBeGreaterThan(0)
    expect(result).not.toHaveProperty('stdout')
    expect(result).not.toHaveProperty('stderr')
  })

  it('--json puts the result on a line of its own after output without a final newline, times to 3 decimals', () => {
    const work = tempDir()
    const path = writeSpec(work, specOf(`node -e "process.stdout.write('no-newline')"`, 'true'))
    const r = worker([path, '0', '--json'])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toBe('no-newline')
    expect(lines[2]).toBe('')
    const result = JSON.parse(lines[1])
    expect(result).toMatchObject({ chunkId: 0, exitCode: 0 })
    // No output at all: the JSON line is the only line, with no blank line before it.
    const quiet = worker([path, '1', '--json'])
    expect(quiet.stdout.split('\n')).toHaveLength(2)
    for (const printed of [result, JSON.parse(quiet.stdout)]) {
      for (const key of ['durationMs', 'cpuUserMs', 'cpuSystemMs']) {
        if (printed[key] === undefined) continue
        expect(typeof printed[key]).toBe('number')
        expect((String(printed[key]).split('.')[1] ?? '').length, `${key} = ${printed[key]}`).toBeLessThanOrEqual(3)
      }
    }
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

  it('on SIGTERM ends the chunk process group, a helper that ignores it after the 5 s grace, and exits 143', async () => {
    const work = tempDir()
    const marker = join(work, 'marker')
    writeFileSync(join(work, 'tree.sh'), `(trap '' TERM; echo started; sleep 6; touch '${marker}') &\nsleep 30\n`)
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

describe('helios-worker merge', () => {
  const work = tempDir()
  const mergeSpec = writeSpec(work, { ...specOf('echo chunk-0'), mergeCommand: writes('merged.txt', 'x', 5) })

  it('runs the mergeCommand in the workspace and exits with its code', () => {
    const workspace = join(tempDir(), 'ws')
    const r = worker(['merge', mergeSpec, '--workspace', workspace])
    expect(r.code).toBe(5)
    expect(readFileSync(join(workspace, 'merged.txt'), 'utf8')).toBe('x')
  })

  it('reads no chunk index: index variables, even ones that disagree, do not matter', () => {
    const workspace = join(tempDir(), 'ws')
    const r = worker(['merge', mergeSpec, '--workspace', workspace], { JOB_COMPLETION_INDEX: '1', SLURM_ARRAY_TASK_ID: 'x' })
    expect(r.code).toBe(5)
    expect(existsSync(join(workspace, 'merged.txt'))).toBe(true)
  })

  it('prints the result as one JSON line with --json', () => {
    const r = worker(['--json', 'merge', mergeSpec, '--workspace', join(tempDir(), 'ws')])
    expect(r.code).toBe(5)
    const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!)
    expect(result).toMatchObject({ merge: true, exitCode: 5 })
    expect(result).not.toHaveProperty('chunkId')
  })

  it('exits 1 with the message and code for a spec without a mergeCommand', () => {
    const r = worker(['merge', spec, '--workspace', join(tempDir(), 'ws')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/mergeCommand/)
    expect(r.stderr).toContain('(ERR_INVALID_JOB_SPEC)')
  })

  it('exits 124 on timeout and 128 + n for a signal, as a chunk does', () => {
    const slow = writeSpec(tempDir(), { ...specOf('true'), mergeCommand: 'sleep 30' })
    expect(worker(['merge', slow, '--timeout', '200']).code).toBe(124)
    const killed = writeSpec(tempDir(), { ...specOf('true'), mergeCommand: 'sh -c "kill -KILL $$"' })
    expect(worker(['merge', killed]).code).toBe(128 + 9)
  })

  it('refuses a missing jobPath or a chunkId as usage errors', () => {
    expect(worker(['merge']).code).toBe(2)
    const r = worker(['merge', mergeSpec, '0'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('merge takes no chunkId')
  })

  it('still runs a spec file named merge, as ./merge', () => {
    const named = tempDir()
    writeSpec(named, specOf('echo from-the-file-named-merge'), 'merge')
    expect(worker(['./merge', '0'], {}, named)).toMatchObject({ code: 0, stdout: 'from-the-file-named-merge\n' })
  })
})

describe('helios-worker --per-job', () => {
  it('runs a chunk and the merge in <workspace>/<job id>', () => {
    const workspace = join(tempDir(), 'ws')
    const path = writeSpec(tempDir(), {
      id: 'per-job-test',
      chunks: [
        { id: 0, command: writes('chunk.txt') },
        { id: 1, command: 'pwd' },
      ],
      mergeCommand: writes('merged.txt'),
    })
    expect(worker([path, '0', '--workspace', workspace, '--per-job']).code).toBe(0)
    expect(existsSync(join(workspace, 'per-job-test', 'chunk.txt'))).toBe(true)
    expect(existsSync(join(workspace, 'chunk.txt'))).toBe(false)
    expect(worker([path, '1', '--workspace', workspace, '--per-job']).stdout.trim()).toBe(join(workspace, 'per-job-test'))
    expect(worker(['merge', path, '--workspace', workspace, '--per-job']).code).toBe(0)
    expect(existsSync(join(workspace, 'per-job-test', 'merged.txt'))).toBe(true)
    expect(existsSync(join(workspace, 'merged.txt'))).toBe(false)
  })

  it('keeps the workspace itself without --per-job', () => {
    const workspace = join(tempDir(), 'ws')
    const path = writeSpec(tempDir(), { id: 'per-job-test', chunks: [{ id: 0, command: writes('chunk.txt') }] })
    expect(worker([path, '0', '--workspace', workspace]).code).toBe(0)
    expect(existsSync(join(workspace, 'chunk.txt'))).toBe(true)
  })
})

describe('helios-worker checks the declared outputFile', () => {
  const work = tempDir()
  const path = writeSpec(work, {
    id: 'outputs',
    chunks: [
      { id: 0, command: writes('out-0.bin', 'abc'), outputFile: 'out-0.bin' },
      { id: 1, command: 'true', outputFile: 'out-1.bin' },
      { id: 2, command: writes('out-2.bin', ''), outputFile: 'out-2.bin' },
      { id: 3, command: 'true', outputFile: 's3://bucket/out-3.bin' },
      { id: 4, command: 'sh -c "exit 7"', outputFile: 'out-4.bin' },
      { id: 5, command: 'true' },
      { id: 6, command: 'mkdir out-6', outputFile: 'out-6' },
    ],
  })

  it('exits 0 when the chunk wrote its outputFile', () => {
    expect(worker([path, '0', '--workspace', join(tempDir(), 'ws')])).toMatchObject({ code: 0, stderr: '' })
  })

  it('exits 1 when the chunk exits 0 but its outputFile is missing', () => {
    const workspace = join(tempDir(), 'ws')
    const r = worker([path, '1', '--workspace', workspace])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`helios-worker: chunk 1 exited 0 but its outputFile ${join(workspace, 'out-1.bin')} is missing`)
  })

  it('exits 1 when the chunk exits 0 and its outputFile is a directory', () => {
    const workspace = join(tempDir(), 'ws')
    const r = worker([path, '6', '--workspace', workspace])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`helios-worker: chunk 6 exited 0 but its outputFile ${join(workspace, 'out-6')} is not a file`)
  })

  it('exits 1 when the chunk exits 0 but its outputFile is empty', () => {
    const workspace = join(tempDir(), 'ws')
    const r = worker([path, '2', '--workspace', workspace])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`helios-worker: chunk 2 exited 0 but its outputFile ${join(workspace, 'out-2.bin')} is empty (0 bytes)`)
  })

  it('checks in the per-job workspace with --per-job', () => {
    const workspace = join(tempDir(), 'ws')
    expect(worker([path, '0', '--workspace', workspace, '--per-job']).code).toBe(0)
    const r = worker([path, '1', '--workspace', workspace, '--per-job'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`its outputFile ${join(workspace, 'outputs', 'out-1.bin')} is missing`)
  })

  it('leaves a URL outputFile, a chunk without one and a failing chunk alone', () => {
    expect(worker([path, '3']).code).toBe(0)
    expect(worker([path, '5']).code).toBe(0)
    expect(worker([path, '4'])).toMatchObject({ code: 7, stderr: '' })
  })
})

describe('the workspace helios-worker makes for itself', () => {
  it('is removed however the run ends, and nothing else is left in the temporary directory', async () => {
    // A temporary directory of this test's own: other tests running at the same time make theirs elsewhere.
    const own = tempDir('hwr-tmpdir-')
    const env = { TMPDIR: own }
    const made = worker([spec, '5'], env).stdout.trim()
    expect(made.startsWith(join(own, 'helios-worker-'))).toBe(true)
    expect(existsSync(made)).toBe(false)
    const merging = writeSpec(tempDir(), { ...specOf(writes('chunk.txt')), mergeCommand: writes('merged.txt', 'x', 3) })
    expect(worker([spec, '0'], env).code).toBe(0)
    expect(worker([spec, '2'], env).code).toBe(7)
    expect(worker([spec, '3'], env).code).toBe(128 + 9)
    expect(worker([spec, '4', '--timeout', '200'], env).code).toBe(124)
    expect(worker([spec, '99'], env).code).toBe(1)
    expect(worker([spec], env).code).toBe(2)
    // Their exit codes are checked above; here only what they leave behind counts.
    worker([merging, '0', '--per-job', '--json'], env)
    worker(['merge', merging], env)
    worker(['merge', merging, '--per-job'], env)
    worker(['merge', spec], env)
    // Ended by SIGTERM while the chunk runs.
    const child = spawn(process.execPath, [cli, spec, '6'], { env: envWith(env), stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((started) => child.stdout.on('data', (d) => String(d).includes('started') && started()))
    child.kill('SIGTERM')
    expect(await new Promise<number | null>((exited) => child.on('exit', (c) => exited(c)))).toBe(143)
    expect(readdirSync(own).filter((name) => name.startsWith('helios-worker-'))).toEqual([])
  })

  it('is removed when SIGHUP or SIGQUIT ends it, or a second signal comes during the clean-up', async () => {
    const own = tempDir('hwr-tmpdir-')
    // Many files, so that removing them takes long enough for a second signal to land meanwhile.
    const busy = writeSpec(tempDir(), specOf('sh -c "mkdir d && cd d && seq 8000 | xargs touch && echo started && sleep 30"'))
    const cases: [NodeJS.Signals[], number][] = [
      [['SIGHUP'], 129],
      [['SIGQUIT'], 131],
      [['SIGINT', 'SIGINT'], 130],
      [['SIGTERM', 'SIGTERM'], 143],
    ]
    for (const [signals, code] of cases) {
      const child = spawn(process.execPath, [cli, busy, '0'], { env: envWith({ TMPDIR: own }), stdio: ['ignore', 'pipe', 'inherit'] })
      const exited = new Promise<number | null>((done) => child.on('exit', (c) => done(c)))
      await new Promise<void>((started) => child.stdout.on('data', (d) => String(d).includes('started') && started()))
      for (const signal of signals) {
        child.kill(signal)
        await sleep(50)
      }
      expect(await exited, signals.join(' then ')).toBe(code)
      expect(readdirSync(own).filter((name) => name.startsWith('helios-worker-')), signals.join(' then ')).toEqual([])
    }
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

describe('helios-worker passes signals on', () => {
  // A test that fails midway must not leave its CLI (and the chunk) running.
  const children: ChildProcess[] = []
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  /** Start the CLI on `command` and wait until it printed `started`. */
  async function started(command: string) {
    const child = spawn(process.execPath, [cli, writeSpec(tempDir(), specOf(command)), '0'], {
      env: envWith(),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((done) => child.on('exit', (c) => done(c)))
    await new Promise<void>((ready) => child.stdout.on('data', () => out.includes('started') && ready()))
    return { child, exited, out: () => out }
  }

  it('gives the chunk SIGTERM and its grace: a trap that cleans up runs, then it exits 143', async () => {
    const cleaned = join(tempDir(), 'cleaned')
    const { child, exited } = await started(`sh -c "trap 'touch ${cleaned}; exit 0' TERM; echo started; while :; do sleep 0.05; done"`)
    child.kill('SIGTERM')
    // Stopped, so 143 although the chunk itself exited 0.
    expect(await exited).toBe(143)
    expect(existsSync(cleaned)).toBe(true)
  })

  it('gives the grace to helpers too, when the command itself dies of SIGTERM at once', async () => {
    const done = join(tempDir(), 'done')
    const { child, exited } = await started(`sh -c "(trap 'sleep 1.5; touch ${done}; exit' TERM; echo started; while :; do sleep 0.02; done) & wait"`)
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    expect(existsSync(done)).toBe(true)
  })

  it('kills a chunk that ignores SIGTERM at once on a second SIGTERM', async () => {
    const marker = join(tempDir(), 'outlived')
    const { child, exited } = await started(`sh -c "trap '' TERM; echo started; sleep 3; touch '${marker}'"`)
    child.kill('SIGTERM')
    await sleep(200)
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    // Without the second signal the grace (5 s) would have let it write the marker at 3 s.
    await sleep(3500)
    expect(existsSync(marker)).toBe(false)
  })

  it('passes SIGUSR1 and SIGUSR2 on to the chunk, and opens no inspector', async () => {
    const { child, exited, out } = await started(
      `sh -c "trap 'echo got-usr1' USR1; trap 'echo got-usr2; exit 0' USR2; echo started; while :; do sleep 0.05; done"`,
    )
    child.kill('SIGUSR1')
    expect(await eventually(() => out().includes('got-usr1'))).toBe(true)
    child.kill('SIGUSR2')
    expect(await exited).toBe(0)
    expect(out()).toContain('got-usr2')
    expect(out()).not.toContain('Debugger')
  })
})

describe('helios-worker keeps rendering', () => {
  it('when its own stdout or stderr fails (a full disk), and exits with the chunk code', () => {
    const work = tempDir()
    const done = join(work, 'done')
    const path = writeSpec(work, specOf(`sh -c "echo out; echo err >&2; sleep 0.2; echo more; echo more >&2; touch '${done}'"`))
    for (const stdio of [['ignore', 'pipe', 'inherit'], ['ignore', 'ignore', 'pipe']] as const) {
      const full = openSync('/dev/full', 'w')
      const io = stdio.map((s) => (s === 'pipe' ? full : s))
      // Its own temporary directory: a CLI that crashes leaves its workspace there, not in the shared one.
      const env = envWith({ TMPDIR: tempDir('hwr-tmpdir-') })
      const r = spawnSync(process.execPath, [cli, path, '0'], { env, stdio: io as any, timeout: 60_000 })
      expect(r.status).toBe(0)
      expect(existsSync(done)).toBe(true)
      rmSync(done)
    }
  })

  it('exits 128 + n for a real-time signal, which has no name', () => {
    const path = writeSpec(tempDir(), specOf('sh -c "kill -37 $$"'))
    const r = worker([path, '0', '--json'])
    expect(JSON.parse(r.stdout).signal).toBe('37')
    expect(r.code).toBe(128 + 37)
  })

  it('refuses an empty jobPath as a usage error', () => {
    expect(worker(['', '0']).code).toBe(2)
    expect(worker(['merge', '']).code).toBe(2)
  })

  it('prints a --json line with the error when the run fails or the outputFile is missing', () => {
    const r = worker([spec, '99', '--json'])
    expect(r.code).toBe(1)
    const line = JSON.parse(r.stdout.trim())
    expect(line).toMatchObject({ chunkId: 99, error: { code: 'ERR_CHUNK_NOT_FOUND', message: 'Chunk with ID 99 not found in job spec' } })
    const slow = worker([spec, '4', '--timeout', '100', '--json'])
    expect(slow.code).toBe(124)
    expect(JSON.parse(slow.stdout.trim())).toMatchObject({ chunkId: 4, timedOut: true, exitCode: -1 })
    const missing = writeSpec(tempDir(), { chunks: [{ id: 0, command: 'true', outputFile: 'out.mp4' }] })
    const m = worker([missing, '0', '--json'])
    expect(m.code).toBe(1)
    expect(JSON.parse(m.stdout.trim())).toMatchObject({ exitCode: 0, error: { code: 'ERR_OUTPUT_MISSING' } })
    expect(JSON.parse(m.stdout.trim()).error.message).toMatch(/^chunk 0 exited 0 but its outputFile .*out\.mp4 is missing$/)
  })

  it('has its own workspace removed even when it is killed with SIGKILL', async () => {
    const own = tempDir('hwr-tmpdir-')
    const path = writeSpec(tempDir(), specOf('sh -c "echo started; touch partial; sleep 30"'))
    const child = spawn(process.execPath, [cli, path, '0'], { env: envWith({ TMPDIR: own }), stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((ready) => child.stdout.on('data', (d) => String(d).includes('started') && ready()))
    const made = () => readdirSync(own).filter((name) => name.startsWith('helios-worker-'))
    expect(made()).toHaveLength(1)
    child.kill('SIGKILL')
    expect(await eventually(() => made().length === 0, 10_000)).toBe(true)
  })
})

describe('helios-worker --json names what stopped it', () => {
  it('the first stop signal, whose number the exit code is, even after a second one', async () => {
    const path = writeSpec(tempDir(), specOf(`sh -c "trap '' TERM INT; echo started; sleep 30"`))
    const child = spawn(process.execPath, [cli, path, '0', '--json'], { env: envWith(), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((done) => child.on('exit', (c) => done(c)))
    try {
      await new Promise<void>((ready) => child.stdout.on('data', () => out.includes('started') && ready()))
      child.kill('SIGTERM')
      await sleep(200)
      child.kill('SIGINT')
      expect(await exited).toBe(143)
      const line = JSON.parse(out.trim().split('\n').at(-1) ?? '')
      expect(line.error.message).toBe('helios-worker received SIGTERM')
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('an error line when it cannot make a workspace of its own', () => {
    const r = worker([spec, '0', '--json'], { TMPDIR: join(tempDir(), 'missing') })
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ chunkId: 0, error: { code: 'ENOENT' } })
  })
})
