import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AsyncLocalStorage } from 'node:async_hooks'
import { afterAll, describe, expect, it, vi } from 'vitest'

import { WorkerRuntime, type RunOptions } from '../index.js'
import { WorkerRuntime as NativeRuntime } from '../binding.js'
import { alive, cleanup, closeServers, eventually, existsSync, serve, sleep, specOf, tempDir, warningsDuring, writeSpec } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const node = JSON.stringify(process.execPath)

function setup(...commands: string[]) {
  const dir = tempDir()
  const path = writeSpec(dir, specOf(...commands))
  return { dir, path, runtime: new WorkerRuntime({ workspaceDir: dir }) }
}

/** A shell script that ignores SIGTERM, starts a grandchild that writes `marker` after a
 * delay, and then waits forever: only a kill of the whole group stops the marker. */
function stubbornTree(dir: string, delay = 2) {
  const marker = join(dir, 'grandchild-marker')
  const script = join(dir, 'stubborn.sh')
  writeFileSync(script, `trap '' TERM\n(sleep ${delay}; touch '${marker}') &\necho $$ > child.pid\nwhile true; do sleep 1; done\n`)
  return { marker, command: `sh ${script}` }
}

describe('timeout', () => {
  it('kills a child that ignores SIGTERM and its grandchild, escalating to SIGKILL', async () => {
    const dir = tempDir()
    const { marker, command } = stubbornTree(dir)
    const path = writeSpec(dir, specOf(command))
    const runtime = new WorkerRuntime({ workspaceDir: dir })
    const result = await runtime.run(path, 0, { timeout: 200, killGracePeriod: 200 })
    expect(result).toMatchObject({ timedOut: true, exitCode: -1, signal: 'SIGKILL' })
    await sleep(2500)
    expect(existsSync(marker)).toBe(false)
  })

  it('reports the kill signal when the child obeys it', async () => {
    const { path, runtime } = setup('sleep 30')
    const result = await runtime.run(path, 0, { timeout: 100 })
    expect(result).toMatchObject({ timedOut: true, exitCode: -1, signal: 'SIGTERM' })
  })

  it('uses killSignal and the runtime defaults', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, specOf('sleep 30'))
    const runtime = new WorkerRuntime({ workspaceDir: dir, timeout: 100, killSignal: 'SIGINT' })
    expect(await runtime.run(path, 0)).toMatchObject({ timedOut: true, signal: 'SIGINT' })
    // A per-run option overrides the default; timeout 0 means none.
    const quick = writeSpec(dir, specOf('sleep 0.3'), 'quick.json')
    const result = await runtime.run(quick, 0, { timeout: 0 })
    expect(result.exitCode).toBe(0)
    expect('timedOut' in result).toBe(false)
  })
})

describe('abort', () => {
  it('rejects at once for a signal aborted before the call, and runs nothing', async () => {
    const dir = tempDir()
    const marker = join(dir, 'ran')
    const path = writeSpec(dir, specOf(`touch ${marker}`))
    const reason = new Error('cancelled by the orchestrator')
    const err = await new WorkerRuntime({ workspaceDir: dir })
      .run(path, 0, { signal: AbortSignal.abort(reason) })
      .catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', message: 'The operation was aborted' })
    expect(err.cause).toBe(reason)
    expect(existsSync(marker)).toBe(false)
  })

  it('kills the process group when aborted during the run', async () => {
    const dir = tempDir()
    const { marker, command } = stubbornTree(dir, 1)
    const path = writeSpec(dir, specOf(command))
    const controller = new AbortController()
    const pidFile = join(dir, 'child.pid')
    const running = new WorkerRuntime({ workspaceDir: dir }).run(path, 0, { signal: controller.signal })
    expect(await eventually(() => existsSync(pidFile)), 'the command started').toBe(true)
    controller.abort()
    const err = await running.catch((e) => e)
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', message: 'The operation was aborted' })
    expect(err.cause).toBe(controller.signal.reason)
    await sleep(1500)
    expect(existsSync(marker)).toBe(false)
  })

  it('cancels a spec fetch from a server that never answers', async () => {
    const { url, hits } = await serve({ '/hang.json': () => {} })
    const dir = tempDir()
    const controller = new AbortController()
    const running = new WorkerRuntime({ workspaceDir: dir }).run(`${url}/hang.json`, 0, { signal: controller.signal })
    expect(await eventually(() => hits.length > 0), 'the server saw the request').toBe(true)
    controller.abort()
    await expect(running).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' })
  })

  it('removes its listener when the run settles', async () => {
    const { path, runtime } = setup('true')
    const controller = new AbortController()
    let added = 0
    let removed = 0
    const signal = controller.signal
    const add = signal.addEventListener.bind(signal)
    const remove = signal.removeEventListener.bind(signal)
    signal.addEventListener = ((...args: Parameters<typeof add>) => (added++, add(...args))) as typeof add
    signal.removeEventListener = ((...args: Parameters<typeof remove>) => (removed++, remove(...args))) as typeof remove
    for (let i = 0; i < 20; i++) await runtime.run(path, 0, { signal })
    expect(added).toBe(20)
    expect(removed).toBe(20)
  })
})

describe('draining', () => {
  it('does not hang on a grandchild that holds the pipe open, and ends it', async () => {
    // The helper would hold stdout for 10 minutes: a run that waited for it would hit the
    // test's own time limit.
    const { path, runtime } = setup(`sh -c "sleep 600 & echo $!"`)
    const result = await runtime.run(path, 0)
    expect(result.exitCode).toBe(0)
    const helper = Number(result.stdout.trim())
    expect(helper).toBeGreaterThan(0)
    expect(await eventually(() => !alive(helper))).toBe(true)
  })

  it('keeps output a helper writes just after the main process exits', async () => {
    const { path, runtime } = setup(`sh -c "(sleep 0.2; echo late) & echo early"`)
    expect((await runtime.run(path, 0)).stdout).toBe('early\nlate\n')
  })
})

describe('maxBuffer', () => {
  it('keeps exactly the most recent bytes of 100,000 lines', async () => {
    const { path, runtime } = setup('seq 1 100000')
    const result = await runtime.run(path, 0, { maxBuffer: 1024 })
    let full = ''
    for (let i = 1; i <= 100000; i++) full += `${i}\n`
    expect(result.stdout).toBe(full.slice(-1024))
    expect(result.stdoutTruncated).toBe(true)
    expect('stderrTruncated' in result).toBe(false)
  })

  it('never kills a talkative process', async () => {
    const { path, runtime } = setup(`sh -c "seq 1 200000; echo end >&2"`)
    const result = await runtime.run(path, 0, { maxBuffer: 10 })
    expect(result).toMatchObject({ exitCode: 0, stderr: 'end\n', stdout: '199999\n200000\n'.slice(-10) })
  })
})

describe('streaming callbacks', () => {
  it('delivers every piece before the run resolves; joined they equal the result', async () => {
    const { path, runtime } = setup(`sh -c "for i in $(seq 1 2000); do echo out-$i; echo err-$i >&2; done"`)
    const out: string[] = []
    const err: string[] = []
    const result = await runtime.run(path, 0, { onStdout: (s) => out.push(s), onStderr: (s) => err.push(s) })
    expect(out.join('')).toBe(result.stdout)
    expect(err.join('')).toBe(result.stderr)
    expect(result.stdout.split('\n')).toHaveLength(2001)
  })

  it('never splits a character between pieces', async () => {
    const dir = tempDir()
    const script = join(dir, 'emit.js')
    writeFileSync(
      script,
      `const fs = require('fs'); const b = Buffer.from('€😀'.repeat(50000));
       for (let i = 0; i < b.length; i += 4093) fs.writeSync(1, b.subarray(i, i + 4093));`,
    )
    const path = writeSpec(dir, specOf(`${node} ${script}`))
    const pieces: string[] = []
    await new WorkerRuntime({ workspaceDir: dir }).run(path, 0, { onStdout: (s) => pieces.push(s) })
    expect(pieces.join('')).toBe('€😀'.repeat(50000))
    for (const piece of pieces) expect(piece).not.toContain('\uFFFD')
  })

  it('survives a throwing callback and still resolves with the full result', async () => {
    const { path, runtime } = setup(`sh -c "echo one; echo two"`)
    let calls = 0
    let result: Awaited<ReturnType<WorkerRuntime['run']>> | undefined
    const warnings = await warningsDuring(async () => {
      result = await runtime.run(path, 0, {
        onStdout: () => {
          calls++
          throw new Error('log sink is down')
        },
      })
    })
    expect(result).toMatchObject({ exitCode: 0, stdout: 'one\ntwo\n' })
    expect(calls).toBe(1)
    expect(warnings.map((w) => w.message).join()).toContain('log sink is down')
  })
})

describe('env and resource use', () => {
  it('lays env over the inherited environment', async () => {
    process.env.HWR_INHERITED = 'inherited'
    const { path, runtime } = setup(`sh -c "echo $HWR_INHERITED:$HWR_ADDED:\${HOME+home}"`)
    const result = await runtime.run(path, 0, { env: { HWR_ADDED: 'added', HOME: null } })
    expect(result.stdout).toBe('inherited:added:\n')
    delete process.env.HWR_INHERITED
  })

  it("the main thread's process.env is read natively, under Node's own lock: each change between runs reaches the command", async () => {
    const glibc = process.platform === 'linux' && Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime)
    const native = NativeRuntime as unknown as { readsEnvironment(): boolean; environmentPairs(): string }
    // Node's lock was found and is a plain mutex: the fast path is the one taken here.
    if (glibc && ['x64', 'arm64'].includes(process.arch)) expect(native.readsEnvironment()).toBe(true)
    const fast = native.readsEnvironment()
    // What a run held back takes at its call, read the same way.
    process.env.HWR_PAIRS = 'p q'
    expect(native.environmentPairs().split('\0')).toContain('HWR_PAIRS=p q')
    delete process.env.HWR_PAIRS
    // What the entry hands over: no environment when the native side reads it at the call.
    const handed: (string | undefined)[] = []
    const run = NativeRuntime.prototype.run
    NativeRuntime.prototype.run = function (this: NativeRuntime, ...args: Parameters<typeof run>) {
      handed.push((args[2] as { inheritedEnv?: string } | undefined)?.inheritedEnv)
      return run.apply(this, args)
    }
    const saved = process.env
    try {
      const { path, runtime } = setup('sh -c "echo ${HWR_N-unset}:${HWR_M-unset}"')
      const seen: string[] = []
      const steps = [() => (process.env.HWR_N = '1'), () => (process.env.HWR_M = 'm'), () => delete process.env.HWR_N, () => (process.env.HWR_M = 'two words')]
      for (const step of steps) {
        step()
        seen.push((await runtime.run(path, 0)).stdout.trim())
      }
      expect(seen).toEqual(['1:unset', '1:m', 'unset:m', 'unset:two words'])
      const together = await Promise.all([runtime.run(path, 0), runtime.run(path, 0)])
      expect(together.map((r) => r.stdout)).toEqual(['unset:two words\n', 'unset:two words\n'])
      delete process.env.HWR_M
      expect(handed.slice(0, 5)).toEqual(Array(5).fill(fast ? undefined : expect.stringContaining('HWR_M=')))
      expect(handed[5]).toContain('HWR_M=two words\0')
      // An object put in place of process.env is what the command gets, as Node's spawn passes
      // it: inherited keys too, `null` as "null". A Proxy, which could hide variables, too.
      for (const replaced of [
        Object.assign(Object.create({ HWR_M: 'inherited' }), { PATH: saved.PATH, HWR_N: null }),
        new Proxy({ ...saved, HWR_N: 'null', HWR_M: 'inherited', HOME: 'hidden' }, { ownKeys: (t) => Reflect.ownKeys(t).filter((k) => k !== 'HOME') }),
      ]) {
        process.env = replaced
        const spawned = spawnSync('sh', ['-c', 'echo ${HWR_N-unset}:${HWR_M-unset}'], { encoding: 'utf8' }).stdout
        expect(spawned).toBe('null:inherited\n')
        expect((await runtime.run(path, 0)).stdout).toBe(spawned)
        expect(handed.at(-1)).toContain('HWR_N=null\0')
        process.env = saved
      }
      expect((await runtime.run(path, 0)).stdout).toBe('unset:unset\n')
    } finally {
      process.env = saved
      NativeRuntime.prototype.run = run
    }
  })

  it("a runtime's defaults hold for every run, and a run's own options are laid over them", async () => {
    const dir = tempDir()
    const path = writeSpec(dir, specOf(`sh -c "echo $HWR_A:$HWR_B:$HWR_C; exec sleep 5"`))
    const runtime = new WorkerRuntime({ workspaceDir: dir, timeout: 300, killSignal: 'SIGINT', env: { HWR_A: 'a', HWR_B: 'b' } })
    const plain = await runtime.run(path, 0)
    expect(plain).toMatchObject({ stdout: 'a:b:\n', timedOut: true, signal: 'SIGINT' })
    const own = await runtime.run(path, 0, { env: { HWR_B: null, HWR_C: 'c' }, killSignal: 'SIGTERM' })
    expect(own).toMatchObject({ stdout: 'a::c\n', timedOut: true, signal: 'SIGTERM' })
    const again = await runtime.run(path, 0, { timeout: 100, env: { HWR_A: 'A' } })
    expect(again).toMatchObject({ stdout: 'A:b:\n', timedOut: true, signal: 'SIGINT' })
  })

  it('a process.env that throws when read rejects the run with what it threw: no download starts, nothing runs', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'touch ran' }] })
    const downloads: unknown[] = []
    const storage = { downloadAssetBundle: async (id: string) => void downloads.push(id) }
    const runtime = new WorkerRuntime({ workspaceDir: dir, storage })
    const saved = process.env
    for (const thrown of [new Error('the environment is unreadable'), Symbol('odd')]) {
      process.env = new Proxy({ ...saved }, { ownKeys: () => { throw thrown } })
      let running: Promise<unknown>
      try {
        running = runtime.run(path, 0)
      } finally {
        process.env = saved
      }
      await expect(running).rejects.toBe(thrown)
    }
    // The spec was loaded meanwhile; what follows it never started.
    await sleep(200)
    expect(downloads).toEqual([])
    expect(existsSync(join(dir, 'ran'))).toBe(false)
    // The same runtime still runs.
    expect((await runtime.run(writeSpec(dir, specOf('echo ok'), 'ok.json'), 0)).stdout).toBe('ok\n')
  })

  it('reports peak RSS and CPU time of a child that allocates 200 MB', async () => {
    const { path, runtime } = setup(`${node} -e "const b = Buffer.alloc(200 * 1024 * 1024, 1); console.log(b[5])"`)
    const result = await runtime.run(path, 0)
    expect(result.stdout).toBe('1\n')
    expect(result.maxRssBytes).toBeGreaterThanOrEqual(200 * 1024 * 1024)
    expect(result.cpuUserMs! + result.cpuSystemMs!).toBeGreaterThan(0)
  })
})

describe('runs started together, in one synchronous stretch', () => {
  it('each takes process.env and the working directory as they stood at its own call', async () => {
    const dir = tempDir()
    const other = tempDir()
    writeSpec(dir, specOf('sh -c "echo $HWR_AT_CALL"'))
    const runtime = new WorkerRuntime({ workspaceDir: dir })
    const [cwd, saved] = [process.cwd(), process.env.HWR_AT_CALL]
    const runs: Promise<{ stdout: string }>[] = []
    try {
      process.chdir(dir)
      for (const value of ['first', 'second', 'third']) {
        process.env.HWR_AT_CALL = value
        runs.push(runtime.run('job.json', 0))
      }
      // A relative spec path is read from where the process was when `run` was called.
      process.chdir(other)
      runs.push(runtime.run('job.json', 0))
    } finally {
      process.chdir(cwd)
      if (saved === undefined) delete process.env.HWR_AT_CALL
      else process.env.HWR_AT_CALL = saved
    }
    const settled = await Promise.allSettled(runs)
    expect(settled.slice(0, 3).map((r) => r.status === 'fulfilled' && r.value.stdout)).toEqual(['first\n', 'second\n', 'third\n'])
    expect(settled[3]).toMatchObject({ status: 'rejected', reason: { code: 'ENOENT' } })
  })

  it('forty started at once all run, each its own chunk, whatever turn of the event loop starts it', async () => {
    const { path, runtime } = setup(...Array.from({ length: 40 }, (_, i) => `echo ${i}`))
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => runtime.run(path, i)))
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 40 }, (_, i) => `${i}\n`))
  })

  it('a held run still starts under fake timers, and one faked queueMicrotask leaves later runs unharmed', async () => {
    const { path, runtime } = setup('echo a', 'echo b')
    for (const toFake of [undefined, ['setImmediate', 'setTimeout', 'queueMicrotask', 'performance'] as const]) {
      vi.useFakeTimers(toFake && { toFake: [...toFake] })
      try {
        const both = Promise.all([runtime.run(path, 0), runtime.run(path, 1, { timeout: 60_000 })])
        // A faked clock that jumps while a run is held does not spend the run's timeout.
        vi.advanceTimersByTime(120_000)
        expect((await both).map((r) => r.stdout)).toEqual(['a\n', 'b\n'])
      } finally {
        vi.useRealTimers()
      }
    }
    expect((await new WorkerRuntime({ workspaceDir: tempDir() }).run(path, 1)).stdout).toBe('b\n')
  })

  it("a held run's callbacks see its caller's AsyncLocalStorage, not the first run's", async () => {
    const { path, runtime } = setup('echo out')
    const als = new AsyncLocalStorage<string>()
    const seen: (string | undefined)[] = []
    const onStdout = () => void seen.push(als.getStore())
    await Promise.all(['req-1', 'req-2', 'req-3'].map((id) => als.run(id, () => runtime.run(path, 0, { onStdout }))))
    expect(seen.sort()).toEqual(['req-1', 'req-2', 'req-3'])
  })

  it('a held run\'s timeout counts from its call, not from when it is handed over', async () => {
    const { path, runtime } = setup('sleep 0.5')
    const runs = [runtime.run(path, 0, { timeout: 1000 }), runtime.run(path, 0, { timeout: 1000 })]
    // The stretch goes on for 800 ms: the held run has 200 ms left for a 500 ms command.
    const end = Date.now() + 800
    while (Date.now() < end);
    const [first, held] = await Promise.all(runs)
    expect(first).toMatchObject({ exitCode: 0 })
    expect(held).toMatchObject({ timedOut: true, signal: 'SIGTERM' })
  })

  it('a held run whose timeout ran out while it was held rejects, its command never started', async () => {
    const { dir, path, runtime } = setup('true', 'touch ran')
    const runs = [runtime.run(path, 0), runtime.run(path, 1, { timeout: 50 })]
    const end = Date.now() + 300
    while (Date.now() < end);
    const [first, held] = await Promise.allSettled(runs)
    expect(first).toMatchObject({ status: 'fulfilled', value: { exitCode: 0 } })
    expect(held).toMatchObject({
      status: 'rejected',
      reason: {
        code: 'ERR_RUN_TIMEOUT',
        message: 'The run timed out after 50 ms while held back behind the runs started before it; its command never started',
      },
    })
    expect(existsSync(join(dir, 'ran'))).toBe(false)
  })

  it('a run alone on the event loop keeps Node alive until it settles, and Node exits once it has', () => {
    const { path } = setup('sh -c "sleep 0.3; echo late"')
    // Nothing else keeps this Node alive: a run that did not would exit before "late", one that
    // kept its handle after settling would never exit (spawnSync's timeout).
    const script = `
      const { WorkerRuntime } = require(${JSON.stringify(join(__dirname, '..', 'index.js'))})
      const runtime = new WorkerRuntime({ workspaceDir: ${JSON.stringify(tempDir())} })
      runtime.run(${JSON.stringify(path)}, 0).then((r) => {
        console.log('first:', r.stdout.trim())
        return runtime.run(${JSON.stringify(path)}, 0)
      }).then((r) => console.log('second:', r.stdout.trim()))
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
    expect(r.stdout).toBe('first: late\nsecond: late\n')
    expect(r.signal).toBeNull()
    expect(r.status).toBe(0)
  })

  it('a Promise.prototype.then that throws once cannot leave the stretch open: later runs still settle', () => {
    const { path } = setup('echo ok')
    const script = `
      const { WorkerRuntime } = require(${JSON.stringify(join(__dirname, '..', 'index.js'))})
      const runtime = new WorkerRuntime({ workspaceDir: ${JSON.stringify(tempDir())} })
      const then = Promise.prototype.then
      Promise.prototype.then = function () { Promise.prototype.then = then; throw new Error('then boom') }
      runtime.run(${JSON.stringify(path)}, 0).catch((e) => console.log('first:', e.message))
      setTimeout(() => runtime.run(${JSON.stringify(path)}, 0).then((r) => console.log('later:', r.stdout.trim())), 50)
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
    expect(r.stdout).toContain('later: ok')
  })

  it('one aborted before the stretch ends never starts its command; the others run', async () => {
    const { dir, path, runtime } = setup('touch ran-0', 'touch ran-1', 'touch ran-2')
    const controller = new AbortController()
    const runs = [runtime.run(path, 0), runtime.run(path, 1, { signal: controller.signal }), runtime.run(path, 2)]
    controller.abort('enough')
    const [first, aborted, third] = await Promise.allSettled(runs)
    expect(aborted).toMatchObject({ status: 'rejected', reason: { name: 'AbortError', code: 'ABORT_ERR', cause: 'enough' } })
    expect([first.status, third.status]).toEqual(['fulfilled', 'fulfilled'])
    expect(['ran-0', 'ran-1', 'ran-2'].map((f) => existsSync(join(dir, f)))).toEqual([true, false, true])
  })
})

describe('validating options before anything runs', () => {
  const { path, runtime, dir } = setup(`touch ran`)
  it.each<[RunOptions | number, string, RegExp]>([
    [{ timeout: -1 }, 'ERR_OUT_OF_RANGE', /"options\.timeout"/],
    [{ timeout: Number.NaN }, 'ERR_OUT_OF_RANGE', /"options\.timeout"/],
    [{ timeout: '10' as unknown as number }, 'ERR_INVALID_ARG_TYPE', /"options\.timeout" property must be of type number/],
    [{ killSignal: 'SIGNOPE' as unknown as number }, 'ERR_INVALID_ARG_VALUE', /killSignal.*SIGNOPE/],
    [{ killSignal: true as unknown as number }, 'ERR_INVALID_ARG_TYPE', /killSignal/],
    [{ killGracePeriod: -5 }, 'ERR_OUT_OF_RANGE', /killGracePeriod/],
    [{ maxBuffer: -1 }, 'ERR_OUT_OF_RANGE', /maxBuffer/],
    [{ onStdout: 'log' as unknown as () => void }, 'ERR_INVALID_ARG_TYPE', /"options\.onStdout" property must be of type function/],
    [{ onStderr: {} as unknown as () => void }, 'ERR_INVALID_ARG_TYPE', /onStderr/],
    [{ signal: {} as AbortSignal }, 'ERR_INVALID_ARG_TYPE', /instance of AbortSignal/],
    [{ env: 'A=1' as unknown as Record<string, string> }, 'ERR_INVALID_ARG_TYPE', /"options\.env"/],
    [{ env: { A: {} } as unknown as Record<string, string> }, 'ERR_INVALID_ARG_TYPE', /"options\.env\.A"/],
    [5, 'ERR_INVALID_ARG_TYPE', /"options" argument must be of type object/],
  ])('refuses %j with %s', async (options, code, message) => {
    const err = await runtime.run(path, 0, options as RunOptions).catch((e) => e)
    expect(err).toBeInstanceOf(TypeError)
    expect(err.code).toBe(code)
    expect(err.message).toMatch(message)
    expect(existsSync(join(dir, 'ran'))).toBe(false)
  })

  it('refuses bad defaults at construction', () => {
    expect(() => new WorkerRuntime({ workspaceDir: dir, timeout: -1 })).toThrow(
      expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining('"config.timeout"') }),
    )
    expect(() => new WorkerRuntime({ workspaceDir: dir, killSignal: 'SIGNOPE' as unknown as number })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }),
    )
  })

  it('accepts null for every option, as absent', async () => {
    const options = { timeout: null, killSignal: null, maxBuffer: null, env: null, signal: null, onStdout: null }
    await expect(runtime.run(path, 0, options as unknown as RunOptions)).resolves.toMatchObject({ exitCode: 0 })
    expect(await eventually(() => existsSync(join(dir, 'ran')))).toBe(true)
  })
})

describe('reading options', () => {
  /** `target` behind a Proxy that counts how often each property is read. */
  function counted<T extends object>(target: T) {
    const reads: Record<string, number> = {}
    const proxy = new Proxy(target, {
      get(t, key, receiver) {
        reads[String(key)] = (reads[String(key)] ?? 0) + 1
        return Reflect.get(t, key, receiver)
      },
    })
    return { proxy, reads }
  }

  it('reads each option and each config field exactly once', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, specOf('true'))
    const config = counted({ workspaceDir: dir, timeout: 5000, maxBuffer: 1024 })
    const runtime = new WorkerRuntime(config.proxy)
    const options = counted({ timeout: 0, killSignal: 'SIGINT' as const, env: { HWR_A: '1' }, onStdout: () => {} })
    await expect(runtime.run(path, 0, options.proxy)).resolves.toMatchObject({ exitCode: 0 })
    expect(Object.keys(options.reads).length).toBeGreaterThanOrEqual(4)
    for (const [key, n] of [...Object.entries(config.reads), ...Object.entries(options.reads)]) expect(n, key).toBe(1)
  })

  it('turns a throwing getter or a throwing Proxy into a rejection, never a throw', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, specOf('touch ran'))
    const runtime = new WorkerRuntime({ workspaceDir: dir })
    const boom = new Error('getter says no')
    const getter = {
      get timeout(): number {
        throw boom
      },
    }
    const proxy = new Proxy({}, {
      get() {
        throw boom
      },
    })
    for (const options of [getter, proxy]) {
      let promise: Promise<unknown> | undefined
      expect(() => {
        promise = runtime.run(path, 0, options as RunOptions)
      }).not.toThrow()
      await expect(promise).rejects.toBe(boom)
    }
    expect(existsSync(join(dir, 'ran'))).toBe(false)
  })

  it('is a class: calling WorkerRuntime without new throws a TypeError', () => {
    const call = WorkerRuntime as unknown as (config: object) => unknown
    expect(() => call({ workspaceDir: tempDir() })).toThrow(TypeError)
  })
})
