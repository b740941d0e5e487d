// What a hostile caller, command, server or thread does must end in a clear, coded result:
// Node never crashes, no run hangs, nothing leaks. One test (or more) per case.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime, type RunOptions } from '../index.js'
import { alive, cleanup, closeServers, eventually, hasOpenssl, serve, sleep, specOf, tempDir, warningsDuring, writeSpec } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const root = resolve(__dirname, '..')
const addon = join(root, 'index.js')
const node = JSON.stringify(process.execPath)

function setup(...commands: string[]) {
  const dir = tempDir()
  return { dir, path: writeSpec(dir, specOf(...commands)), runtime: new WorkerRuntime({ workspaceDir: dir }) }
}

/** Run a script in a Node process of its own; its exit code, signal and output. */
function nodeScript(dir: string, source: string, timeout = 120_000) {
  const file = join(dir, `script-${Math.random().toString(36).slice(2)}.cjs`)
  writeFileSync(file, source)
  const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

describe('crashes', () => {
  it('1. process.env written while runs spawn: Node survives, variables set before run reach the command', () => {
    const dir = tempDir()
    writeSpec(dir, specOf('true', 'sh -c "echo $HWR_BEFORE"'))
    const r = nodeScript(
      dir,
      `const { WorkerRuntime } = require(${JSON.stringify(addon)})
       const runtime = new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} })
       let writing = true, n = 0
       const write = () => { process.env['HWR_NOISE_' + (n++ % 200)] = 'x'.repeat(n % 100); if (writing) setImmediate(write) }
       write()
       const loop = async (withEnv) => { for (let i = 0; i < 150; i++) {
         const r = await runtime.run('job.json', 0, withEnv ? { env: { HWR_ADDED: String(i) } } : undefined)
         if (r.exitCode !== 0) throw new Error('exit ' + r.exitCode + ' ' + r.stderr)
       } }
       process.env.HWR_BEFORE = 'seen'
       Promise.all([...Array(8)].map((_, i) => loop(i % 2 === 0)))
         .then(() => runtime.run('job.json', 1))
         .then((r) => { writing = false; console.log('OK ' + r.stdout.trim()) }, (e) => { writing = false; console.log('FAILED ' + e.message); process.exitCode = 1 })`,
    )
    expect(r.signal).toBe(null)
    expect(r.stdout.trim()).toBe('OK seen')
    expect(r.code).toBe(0)
  })

  it('1. a worker thread sharing the environment (SHARE_ENV) and adding, changing and deleting variables while runs start: Node survives', () => {
    const dir = tempDir()
    // Runs started one at a time read the environment natively (under Node's lock), the
    // others in a batch take it natively at their call: both while the worker grows and
    // shrinks it.
    writeSpec(dir, specOf('sh -c "echo $HWR_MAIN"'))
    const r = nodeScript(
      dir,
      `const { Worker, SHARE_ENV, isMainThread } = require('node:worker_threads')
       if (isMainThread) {
         const { WorkerRuntime } = require(${JSON.stringify(addon)})
         const runtime = new WorkerRuntime({ workspaceDir: '.' })
         new Worker(__filename, { env: SHARE_ENV })
         let runs = 0
         let wrong = 0
         const started = Date.now()
         const batch = async () => {
           if (Date.now() - started > 3000) { console.log('OK ' + (runs >= 200) + ' ' + wrong); process.exit(0) }
           const all = []
           for (let i = 0; i < 200; i++, runs++) all.push(runtime.run('missing.json', 0).catch(() => {}))
           await Promise.all(all)
           for (let i = 0; i < 20; i++, runs++) {
             process.env.HWR_MAIN = 'main-' + i
             if ((await runtime.run('job.json', 0)).stdout !== 'main-' + i + '\\n') wrong++
           }
           setImmediate(batch)
         }
         batch()
       } else {
         for (let i = 0; ; i++) {
           process.env['HWR_SHARED_' + (i % 5000)] = 'x'.repeat(i % 64)
           if (i % 5000 === 4999) for (let k = 0; k < 5000; k++) delete process.env['HWR_SHARED_' + k]
         }
       }`,
    )
    expect(r.signal).toBe(null)
    expect(r.stdout.trim()).toBe('OK true 0')
  })

  it.each([
    ['a Symbol', 'Symbol("boom")', 'Symbol(boom)'],
    ['a plain object', '{ a: 1 }', '{ a: 1 }'],
    ['a number', '42', '42'],
    ['a string', '"bad"', 'bad'],
  ])('2. a callback throwing %s: the run resolves in full and one warning shows the value', async (_, thrown, shown) => {
    const { path, runtime } = setup('sh -c "echo one; echo two >&2; echo three"')
    let calls = 0
    let result: Awaited<ReturnType<WorkerRuntime['run']>> | undefined
    const throwing = new Function(`return ${thrown}`)()
    const warnings = await warningsDuring(async () => {
      result = await runtime.run(path, 0, {
        onStdout: () => {
          calls++
          throw throwing
        },
      })
    })
    expect(result).toMatchObject({ exitCode: 0, stdout: 'one\nthree\n', stderr: 'two\n' })
    expect(calls).toBe(1)
    const ours = warnings.filter((w) => w.name === 'HeliosWorkerRuntimeWarning')
    expect(ours).toHaveLength(1)
    expect(ours[0].message).toContain(shown)
  })
})

describe('hangs', () => {
  it('3. every run settles exactly once, whatever the signal does: abort(Symbol()), a throwing reason, a throwing removeEventListener', async () => {
    const { dir, path, runtime } = setup('sh -c "echo $$ > child.pid; exec sleep 30"')
    const started = () => existsSync(join(dir, 'child.pid'))
    // abort with a Symbol as the reason
    const symbol = Symbol('why')
    const c1 = new AbortController()
    const p1 = runtime.run(path, 0, { signal: c1.signal })
    expect(await eventually(started)).toBe(true)
    c1.abort(symbol)
    const e1 = await p1.catch((e) => e)
    expect(e1).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' })
    expect(e1.cause).toBe(symbol)
    // a signal whose reason getter throws
    const c2 = new AbortController()
    const odd = c2.signal
    Object.defineProperty(odd, 'reason', {
      get() {
        throw new Error('no reason for you')
      },
    })
    rmSync(join(dir, 'child.pid'))
    const p2 = runtime.run(path, 0, { signal: odd })
    expect(await eventually(started)).toBe(true)
    c2.abort()
    await expect(p2).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' })
    // a signal whose removeEventListener throws: the run still resolves
    const c3 = new AbortController()
    const stubborn = c3.signal
    stubborn.removeEventListener = () => {
      throw new Error('cannot remove')
    }
    const quick = writeSpec(dir, specOf('echo done'), 'quick.json')
    await expect(runtime.run(quick, 0, { signal: stubborn })).resolves.toMatchObject({ stdout: 'done\n' })
    // a signal whose addEventListener throws: the run rejects with that error, nothing runs
    const c4 = new AbortController()
    const deaf = c4.signal
    const refused = new Error('no listeners here')
    deaf.addEventListener = () => {
      throw refused
    }
    await expect(runtime.run(quick, 0, { signal: deaf })).rejects.toBe(refused)
  })

  it.skipIf(process.platform !== 'linux')('4. a FIFO as jobPath holds no thread: other runs go on, an abort and a timeout end it at once', async () => {
    const dir = tempDir()
    const fifos = [0, 1, 2, 3].map((i) => join(dir, `fifo-${i}.json`))
    for (const fifo of fifos) execFileSync('mkfifo', [fifo])
    const runtime = new WorkerRuntime({ workspaceDir: dir })
    const controller = new AbortController()
    const blocked = fifos.slice(0, 3).map((fifo) => runtime.run(fifo, 0, { signal: controller.signal }))
    const settled = blocked.map(() => false)
    blocked.forEach((p, i) => p.catch(() => {}).finally(() => (settled[i] = true)))
    // More FIFO loads than cores are waiting; an unrelated run is not held up by them.
    const echo = writeSpec(dir, specOf('echo unrelated'), 'echo.json')
    await expect(runtime.run(echo, 0, { timeout: 1000 })).resolves.toMatchObject({ stdout: 'unrelated\n' })
    expect(settled).toEqual([false, false, false])
    // The whole-run timeout ends a load that waits for a writer.
    const timedOut = await runtime.run(fifos[3], 0, { timeout: 300 }).catch((e) => e)
    expect(timedOut).toMatchObject({ code: 'ERR_RUN_TIMEOUT' })
    expect(timedOut.message).toContain('loading the job spec')
    // An abort ends the waiting loads.
    controller.abort()
    for (const p of blocked) await expect(p).rejects.toMatchObject({ code: 'ABORT_ERR' })
    // A FIFO that does get a writer is read like a file.
    const fed = runtime.run(fifos[0], 0)
    writeFileSync(fifos[0], JSON.stringify(specOf('echo from a fifo')))
    await expect(fed).resolves.toMatchObject({ stdout: 'from a fifo\n' })
  })

  it.skipIf(process.platform !== 'linux')('4. a FIFO whose writer leaves without writing reads as an empty file, as Node reads it', async () => {
    const dir = tempDir()
    const fifo = join(dir, 'fifo.json')
    execFileSync('mkfifo', [fifo])
    const runtime = new WorkerRuntime({ workspaceDir: dir })
    const empty = { code: 'ERR_INVALID_JOB_SPEC', message: expect.stringContaining('EOF while parsing') }
    // A writer that opens it and closes it at once (the timeout only keeps a failure from hanging).
    const closed = runtime.run(fifo, 0, { timeout: 5000 })
    writeFileSync(fifo, '')
    await expect(closed).rejects.toMatchObject(empty)
    // A writer that holds it open for a while, writes nothing, and dies.
    const held = runtime.run(fifo, 0, { timeout: 5000 })
    const holder = spawn('sh', ['-c', 'exec 3>"$0"; sleep 0.3; kill -9 $$', fifo], { stdio: 'ignore' })
    const died = new Promise((done) => holder.once('exit', (_code, signal) => done(signal)))
    await expect(held).rejects.toMatchObject(empty)
    expect(await died).toBe('SIGKILL')
  })

  it('5. a storage adapter that never settles: timeout ends the run, and the adapter is told', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'touch ran' }] })
    let signal: AbortSignal | undefined
    const storage = {
      downloadAssetBundle: (_id: string, _url: string, _dir: string, options: { signal: AbortSignal }) => {
        signal = options.signal
        return new Promise<void>(() => {})
      },
    }
    const err = await new WorkerRuntime({ workspaceDir: dir, storage, timeout: 300 }).run(path, 0).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_RUN_TIMEOUT' })
    expect(err.message).toContain('storage.downloadAssetBundle')
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBe(err)
    expect(existsSync(join(dir, 'ran'))).toBe(false)
  })

  it('5. a pending storage promise that nothing else refers to survives garbage collection', () => {
    const dir = tempDir()
    writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'true' }] })
    const r = spawnSync(
      process.execPath,
      [
        '--expose-gc',
        '-e',
        `const { WorkerRuntime } = require(${JSON.stringify(addon)})
         const storage = { downloadAssetBundle: () => new Promise(() => {}) }
         const running = new WorkerRuntime({ workspaceDir: '.', storage, timeout: 500 }).run('job.json', 0)
         setTimeout(() => { for (let i = 0; i < 5; i++) globalThis.gc() }, 100)
         running.then(() => console.log('resolved'), (e) => console.log(e.code))`,
      ],
      { cwd: dir, encoding: 'utf8', timeout: 60_000 },
    )
    expect(r.stdout.trim()).toBe('ERR_RUN_TIMEOUT')
  })

  it('6. an abort during downloadAssetBundle reaches the adapter as its signal, and a well-written adapter stops', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'true' }] })
    let written = 0
    let stoppedBy: unknown
    const storage = {
      async downloadAssetBundle(_id: string, _url: string, targetDir: string, { signal }: { signal: AbortSignal }) {
        while (!signal.aborted) {
          writeFileSync(join(targetDir, `part-${written++}`), 'x')
          await sleep(10)
        }
        stoppedBy = signal.reason
      },
    }
    const controller = new AbortController()
    const reason = new Error('evicted')
    const running = new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0, { signal: controller.signal })
    expect(await eventually(() => written > 0)).toBe(true)
    controller.abort(reason)
    await expect(running).rejects.toMatchObject({ code: 'ABORT_ERR', cause: reason })
    expect(await eventually(() => stoppedBy !== undefined)).toBe(true)
    expect(stoppedBy).toBe(reason)
    const after = written
    await sleep(100)
    expect(written).toBe(after)
  })
})

describe('bounds and leaks', () => {
  it('7. output for a busy callback is held back, not piled up: memory stays bounded and nothing is dropped', () => {
    const dir = tempDir()
    writeSpec(dir, specOf('head -c 268435456 /dev/zero'))
    const r = nodeScript(
      dir,
      `const { WorkerRuntime } = require(${JSON.stringify(addon)})
       let delivered = 0, first = true
       new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} }).run('job.json', 0, {
         maxBuffer: 1024,
         onStdout: (text) => {
           if (first) { first = false; const until = Date.now() + 3000; while (Date.now() < until); }
           delivered += text.length
         },
       }).then((r) => console.log(JSON.stringify({ exitCode: r.exitCode, delivered, maxRss: process.resourceUsage().maxRSS * 1024 })))`,
    )
    const out = JSON.parse(r.stdout)
    expect(out.exitCode).toBe(0)
    expect(out.delivered).toBe(268435456)
    // 256 MiB went through; without back-pressure it all waits in memory for the callback.
    expect(out.maxRss).toBeLessThan(200 * 2 ** 20)
  })

  it('8. a terminated worker thread takes its runs with it, and nothing is printed', async () => {
    const dir = tempDir()
    writeSpec(dir, specOf('sh -c "echo $$ > child.pid; exec sleep 60"'))
    const r = nodeScript(
      dir,
      `const { Worker } = require('node:worker_threads')
       const { existsSync, readFileSync } = require('node:fs')
       require(${JSON.stringify(addon)})
       const worker = new Worker(\`
         const { WorkerRuntime } = require(${JSON.stringify(addon)})
         new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} }).run('job.json', 0, { onStdout: () => {} })
       \`, { eval: true })
       const wait = setInterval(async () => {
         if (!existsSync('child.pid')) return
         clearInterval(wait)
         const pid = Number(readFileSync('child.pid', 'utf8'))
         await worker.terminate()
         const deadline = Date.now() + 5000
         const alive = () => { try { return !/\\) Z/.test(readFileSync('/proc/' + pid + '/stat', 'utf8')) } catch { return false } }
         while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
         console.log(alive() ? 'ALIVE ' + pid : 'GONE')
       }, 20)`,
    )
    expect(r.stdout.trim()).toBe('GONE')
    expect(r.stderr).not.toMatch(/ObjectRef|leak/)
    expect(r.code).toBe(0)
  })

  it.skipIf(process.platform !== 'linux')('9. a killed watcher is replaced: runs in flight still die with Node, and nothing is left in /dev/shm', async () => {
    const shm = () => readdirSync('/dev/shm').filter((name) => name.startsWith('helios-worker-runtime-'))
    const shmBefore = shm()
    const dir = tempDir()
    writeSpec(dir, specOf('sh -c "echo $$ > child.pid; exec sleep 60"'))
    const driver = join(dir, 'driver.cjs')
    writeFileSync(
      driver,
      `const { WorkerRuntime } = require(${JSON.stringify(addon)})
       new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} }).run('job.json', 0)
       setInterval(() => {}, 60000)`,
    )
    const child = spawn(process.execPath, [driver], { cwd: dir, stdio: 'ignore' })
    const watchers = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
            return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('helios-worker-runtime-watcher') &&
              Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === child.pid
          } catch {
            return false
          }
        })
        .map(Number)
    try {
      expect(await eventually(() => existsSync(join(dir, 'child.pid')) && watchers().length === 1, 15_000)).toBe(true)
      const pid = Number(readFileSync(join(dir, 'child.pid'), 'utf8'))
      const [first] = watchers()
      process.kill(first, 'SIGKILL')
      const replaced = await eventually(() => {
        const now = watchers()
        return now.length === 1 && now[0] !== first
      }, 15_000)
      expect(replaced, `watchers of ${child.pid}: first ${first}, now ${watchers()}`).toBe(true)
      child.kill('SIGKILL')
      expect(await eventually(() => !alive(pid), 15_000)).toBe(true)
      expect(shm()).toEqual(shmBefore)
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('10. output larger than a JavaScript string resolves, truncated and flagged, with its exit code and stderr', async () => {
    const { MAX_STRING_LENGTH } = (await import('node:buffer')).constants
    const { path, runtime } = setup(`sh -c "head -c ${MAX_STRING_LENGTH + 4096} /dev/zero; echo tail >&2; exit 3"`)
    const result = await runtime.run(path, 0, { maxBuffer: Number.POSITIVE_INFINITY })
    expect(result).toMatchObject({ exitCode: 3, stderr: 'tail\n', stdoutTruncated: true })
    expect(result.stdout.length).toBe(MAX_STRING_LENGTH)
    const refused = await runtime.run(path, 0, { maxBuffer: MAX_STRING_LENGTH + 1 }).catch((e) => e)
    expect(refused).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
  }, 120_000)
})

describe('wrong values and messages', () => {
  it('an object put in place of process.env before the package loads is what every run gets, as with spawn', () => {
    const dir = tempDir()
    writeSpec(dir, specOf('sh -c "echo copy=$HWR_ONLY_IN_COPY home=${HOME-unset}"'))
    const r = nodeScript(
      dir,
      `process.env = { ...process.env, HWR_ONLY_IN_COPY: 'copy' }
       delete process.env.HOME
       const { WorkerRuntime } = require(${JSON.stringify(addon)})
       const runtime = new WorkerRuntime({ workspaceDir: '.' })
       const spawned = require('node:child_process').execFileSync('sh', ['-c', 'echo copy=$HWR_ONLY_IN_COPY home=\${HOME-unset}'], { encoding: 'utf8' })
       Promise.all([runtime.run('job.json', 0), runtime.run('job.json', 0)]).then(([first, held]) => console.log(JSON.stringify([first.stdout, held.stdout, spawned])))`,
    )
    expect(JSON.parse(r.stdout)).toEqual(Array(3).fill('copy=copy home=unset\n'))
    // A Proxy over the real one, which writes through but hides a variable when read.
    const hidden = nodeScript(
      dir,
      `const real = process.env
       process.env.HWR_ONLY_IN_COPY = 'real'
       process.env = new Proxy(real, {
         get: (t, k) => (k === 'HOME' ? undefined : Reflect.get(t, k)),
         has: (t, k) => k !== 'HOME' && Reflect.has(t, k),
         ownKeys: (t) => Reflect.ownKeys(t).filter((k) => k !== 'HOME'),
       })
       const { WorkerRuntime } = require(${JSON.stringify(addon)})
       const runtime = new WorkerRuntime({ workspaceDir: '.' })
       const spawned = require('node:child_process').execFileSync('sh', ['-c', 'echo copy=$HWR_ONLY_IN_COPY home=\${HOME-unset}'], { encoding: 'utf8' })
       Promise.all([runtime.run('job.json', 0), runtime.run('job.json', 0)]).then(([first, held]) => console.log(JSON.stringify([first.stdout, held.stdout, spawned])))`,
    )
    expect(JSON.parse(hidden.stdout)).toEqual(Array(3).fill('copy=real home=unset\n'))
  })

  it.skipIf(process.platform !== 'linux' || spawnSync('cc', ['--version']).status !== 0)(
    'an environment with a name twice, bytes that are not UTF-8 and names Node cannot look up reaches the command as process.env shows it, as with spawn',
    () => {
      const dir = tempDir()
      // Not through a shell, which passes on only the names it can use.
      writeSpec(dir, specOf('sh -c "printf %s $DUP:$BIN | od -An -tx1"', 'cat /proc/self/environ'))
      writeFileSync(
        join(dir, 'script.cjs'),
        `const { WorkerRuntime } = require(${JSON.stringify(addon)})
         const runtime = new WorkerRuntime({ workspaceDir: '.' })
         const spawned = require('node:child_process').execFileSync('sh', ['-c', 'printf %s $DUP:$BIN | od -An -tx1'], { encoding: 'utf8' })
         const twice = async () => (await Promise.all([runtime.run('job.json', 0), runtime.run('job.json', 0)])).map((r) => r.stdout)
         const sorted = (text) => text.split('\\0').filter((pair) => pair && !pair.startsWith('HELIOS_WORKER_RUNTIME')).sort()
         twice().then(async (before) => {
           process.env.DUP = 'set'
           const listed = (await Promise.all([runtime.run('job.json', 1), runtime.run('job.json', 1)])).map((r) => sorted(r.stdout))
           const spawnedList = sorted(require('node:child_process').execFileSync('cat', ['/proc/self/environ'], { encoding: 'utf8' }))
           console.log(JSON.stringify({ process: process.env.DUP, before, spawned, after: await twice(), listed, spawnedList }))
         })`,
      )
      // A launcher can hand a process the same name twice, and any bytes: execve takes them as they are.
      writeFileSync(
        join(dir, 'launch.c'),
        `#include <unistd.h>
         int main(void) {
           char *argv[] = { "node", "script.cjs", 0 };
           char *envp[] = { "DUP=one", "DUP=two", "BIN=a\\xff" "b", "PATH=/usr/bin:/bin", "K\\xff=v", "X\\xef\\xbf\\xbd=real",
                            "X\\xff=bogus", "=x=1", 0 };
           execve(${JSON.stringify(process.execPath)}, argv, envp);
           return 127;
         }`,
      )
      execFileSync('cc', ['-o', join(dir, 'launch'), join(dir, 'launch.c')])
      const out = JSON.parse(execFileSync(join(dir, 'launch'), { cwd: dir, encoding: 'utf8' }))
      // `getenv` and process.env take a name's first entry; Node decodes the bytes as UTF-8.
      const shown = (text: string) => ` ${[...Buffer.from(text)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}\n`
      expect(out.spawned).toBe(shown('one:a\ufffdb'))
      expect(out.before).toEqual([out.spawned, out.spawned])
      expect(out.after).toEqual(Array(2).fill(shown('set:a\ufffdb')))
      // Names: one not UTF-8 (Node lists it decoded but cannot look it up), one that decodes to
      // another's, one that libuv reads as empty; the whole environment, as spawn passes it.
      expect(out.spawnedList).toEqual(['BIN=a\ufffdb', 'DUP=set', 'PATH=/usr/bin:/bin', 'X\ufffd=real'])
      expect(out.listed).toEqual([out.spawnedList, out.spawnedList])
    },
  )

  it.each<[string, RunOptions]>([
    ['timeout 1e300', { timeout: 1e300 }],
    ['timeout 1e22', { timeout: 1e22 }],
    ['timeout 2^31', { timeout: 2 ** 31 }],
    ['killGracePeriod 1e300', { killGracePeriod: 1e300 }],
  ])('11. %s is refused as out of range before anything starts', async (_, options) => {
    const { dir, path, runtime } = setup('touch ran')
    const err = await runtime.run(path, 0, options).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(err.message).toContain('<= 2147483647')
    expect(existsSync(join(dir, 'ran'))).toBe(false)
  })

  it('11. fetch timeouts out of range are refused at construction', () => {
    for (const key of ['timeoutMs', 'connectTimeoutMs', 'idleTimeoutMs', 'retryBaseMs', 'retryMaxMs']) {
      expect(() => new WorkerRuntime({ workspaceDir: tempDir(), fetch: { [key]: 1e300 } })).toThrow(
        expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining(`config.fetch.${key}`) }),
      )
    }
  })

  it('12. maxSpecBytes: Infinity means no limit; a valid spec is never misread', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, specOf('echo read'))
    for (const maxSpecBytes of [Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER]) {
      const runtime = new WorkerRuntime({ workspaceDir: dir, fetch: { maxSpecBytes } })
      await expect(runtime.run(path, 0)).resolves.toMatchObject({ stdout: 'read\n' })
    }
    expect(() => new WorkerRuntime({ workspaceDir: dir, fetch: { maxSpecBytes: 2 ** 64 } })).toThrow(
      expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }),
    )
  })

  it.skipIf(!hasOpenssl)('13. a damaged PEM certificate is refused at construction, naming it', () => {
    const dir = tempDir()
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=t', '-keyout', 'k.pem', '-out', 'c.pem'], { cwd: dir, stdio: 'pipe' })
    const pem = readFileSync(join(dir, 'c.pem'), 'utf8')
    const lines = pem.split('\n')
    // Valid base64, so the PEM framing parses; the DER inside no longer does.
    lines[1] = 'A'.repeat(lines[1].length)
    const damaged = lines.join('\n')
    expect(() => new WorkerRuntime({ workspaceDir: dir, fetch: { caCertificates: [pem, damaged] } })).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_ARG_VALUE',
        message: expect.stringMatching(/config\.fetch\.caCertificates\[1\].*certificate 1 of the document does not parse/),
      }),
    )
    expect(() => new WorkerRuntime({ workspaceDir: dir, fetch: { caCertificates: [pem] } })).not.toThrow()
  })

  it('16. a reason phrase that is not ASCII: the standard phrase for the status, never an empty one', async () => {
    const answers: Array<[number, Buffer, string]> = [
      [404, Buffer.from('Erreur interne — échec', 'utf8'), 'Not Found'],
      [403, Buffer.from('Acc\u00e8s refus\u00e9', 'latin1'), 'Forbidden'],
      [499, Buffer.from('\u00e9chec', 'latin1'), 'Unknown Status'],
    ]
    for (const [status, reason, shown] of answers) {
      const server = createServer((socket) => {
        socket.once('data', () => {
          socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status} `), reason, Buffer.from('\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')]))
        })
      })
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/job.json`
      const err = await new WorkerRuntime({ workspaceDir: tempDir() }).run(url, 0).catch((e) => e)
      server.close()
      expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
      expect(err.message).toContain(`Failed to fetch job spec: ${shown} (HTTP ${status} from ${url})`)
    }
  })

  it('17. a storage rejection that is not an Error becomes one, keeping the value as cause', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'true' }] })
    const values: unknown[] = ['nope', 42, { reason: 'object' }, Symbol('sym')]
    for (const value of values) {
      const storage = { downloadAssetBundle: () => Promise.reject(value) }
      const err = await new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0).catch((e) => e)
      expect(err).toBeInstanceOf(Error)
      expect(err.cause).toBe(value)
    }
    const err = await new WorkerRuntime({ workspaceDir: dir, storage: { downloadAssetBundle: () => Promise.reject('nope') } })
      .run(path, 0)
      .catch((e) => e)
    expect(err.message).toBe('nope')
  })

  it('19. one AbortSignal shared by many concurrent runs: no MaxListenersExceededWarning', async () => {
    const { path, runtime } = setup('sleep 0.2')
    const controller = new AbortController()
    const warnings = await warningsDuring(() =>
      Promise.all(Array.from({ length: 30 }, () => runtime.run(path, 0, { signal: controller.signal }))),
    )
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning')
  })
})

describe('18. the CLI', () => {
  const cli = join(root, 'bin', 'helios-worker.js')

  it('survives a reader that goes away (| head -c 1): no EPIPE crash, the chunk exit code', () => {
    const dir = tempDir()
    const spec = writeSpec(dir, specOf('seq 1 200000'))
    const status = spawnSync('bash', ['-c', `${node} ${JSON.stringify(cli)} ${JSON.stringify(spec)} 0 --workspace ${JSON.stringify(dir)} | head -c 1 >/dev/null; echo \${PIPESTATUS[0]}`], {
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(status.stdout.trim()).toBe('0')
    expect(status.stderr).toBe('')
  })

  it('refuses an empty --workspace= with the usage code, and shows an index of spaces as it is', () => {
    const dir = tempDir()
    const spec = writeSpec(dir, specOf('true'))
    const empty = spawnSync(process.execPath, [cli, spec, '0', '--workspace='], { encoding: 'utf8' })
    expect(empty.status).toBe(2)
    expect(empty.stderr).toContain('--workspace')
    const env = { ...process.env, JOB_COMPLETION_INDEX: '   ' }
    const spaces = spawnSync(process.execPath, [cli, spec], { encoding: 'utf8', env })
    expect(spaces.status).toBe(2)
    expect(spaces.stderr).toContain('got "   "')
  })
})

describe('more hostile inputs', () => {
  it('a global Error that throws while a failed run\'s error is built rejects the run with what it threw; later runs are unharmed', () => {
    const dir = tempDir()
    writeSpec(dir, specOf('echo ok'))
    const r = nodeScript(
      dir,
      `const { WorkerRuntime } = require(${JSON.stringify(addon)})
       const runtime = new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} })
       const RealError = Error
       // Twice: the first run (its directory not yet known to be local) goes to tokio's
       // workers, the second is polled on this thread; their promises settle on different paths.
       async function twice() {
         for (let i = 0; i < 2; i++) {
           globalThis.Error = function () { throw new RealError('constructor boom') }
           await runtime.run('job.json', 7).then(() => console.log('resolved'), (e) => console.log('rejected: ' + e.message))
           globalThis.Error = RealError
           await runtime.run('job.json', 0).then((r) => console.log('later: ' + r.stdout.trim()), (e) => console.log('later failed: ' + e.message))
         }
       }
       twice()`,
      30_000,
    )
    expect(r.stdout).toBe('rejected: constructor boom\nlater: ok\n'.repeat(2))
    expect(r.stderr).not.toMatch(/FATAL/)
    expect(r.code).toBe(0)
  })

  it('a runtime with a storage adapter can be collected once dropped', () => {
    const dir = tempDir()
    writeSpec(dir, specOf('true'))
    const r = spawnSync(
      process.execPath,
      [
        '--expose-gc',
        '-e',
        `const { WorkerRuntime } = require(${JSON.stringify(addon)})
         let collected = 0
         const registry = new FinalizationRegistry(() => collected++)
         ;(async () => {
           for (let i = 0; i < 40; i++) {
             const runtime = new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)}, storage: { downloadAssetBundle() {} } })
             await runtime.run('job.json', 0)
             registry.register(runtime, i)
           }
           for (let i = 0; i < 20 && collected < 40; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 50)) }
           console.log(collected)
         })()`,
      ],
      { cwd: dir, encoding: 'utf8', timeout: 60_000 },
    )
    expect(Number(r.stdout.trim())).toBeGreaterThanOrEqual(35)
  })

  it("the adapter's own error comes back as it is, whatever code, errno or freezing it has", async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'true' }] })
    const errors = [
      Object.assign(new Error('timed out inside the SDK'), { code: 'ABORT_ERR' }),
      Object.assign(new Error('S3 GetObject failed, bucket b, key k'), { errno: -5, syscall: 'GetObject', code: 'S3Error' }),
      Object.freeze(Object.assign(new Error('frozen, read, x'), { errno: -2, syscall: 'read', code: 'ENOENT' })),
      (await import('node:vm')).runInNewContext('new Error("from another realm")'),
    ]
    for (const error of errors) {
      const message = error.message
      const storage = { downloadAssetBundle: () => Promise.reject(error) }
      const err = await new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0).catch((e) => e)
      expect(err).toBe(error)
      expect(err.message).toBe(message)
    }
  })

  it('a spec id too large for a double reaches the adapter as a number, not a BigInt', async () => {
    const dir = tempDir()
    const path = join(dir, 'job.json')
    writeFileSync(path, '{"id":12345678901234567890,"assetsUrl":"s3://b/a.zip","chunks":[{"id":0,"command":"true"}]}')
    let seen: unknown
    const storage = { downloadAssetBundle: (jobId: unknown) => void (seen = jobId) }
    await new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0)
    expect(seen).toBe(12345678901234567890)
  })

  it('a byte that is not UTF-8 in a field becomes U+FFFD, as Node decodes a file, and the chunk runs', async () => {
    const dir = tempDir()
    const path = join(dir, 'job.json')
    writeFileSync(path, Buffer.from('{"title":"caf\xe9","chunks":[{"id":0,"command":"echo \xe9t\xe9"}]}', 'latin1'))
    const result = await new WorkerRuntime({ workspaceDir: dir }).run(path, 0)
    expect(result.stdout).toBe('\uFFFDt\uFFFD\n')
  })

  it('a lone UTF-16 surrogate escape, which JSON.parse accepts, becomes U+FFFD as Node passes it to a command', async () => {
    const dir = tempDir()
    const spec = String.raw`{"id":"\udc00","assetsUrl":"s3://b/\ud800","chunks":[{"id":0,"command":"printf %s \ud800\ud83d\ude00"}]}`
    const path = writeSpec(dir, spec)
    const ids: unknown[] = []
    const storage = { downloadAssetBundle: async (id: string, url: string) => void ids.push(id, url) }
    const result = await new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0)
    expect(result.stdout).toBe('\uFFFD\u{1F600}')
    expect(ids).toEqual(['\uFFFD', 's3://b/\uFFFD'])
    // What the plain-Node way passes to spawn gives the same bytes.
    const parsed = JSON.parse(spec)
    expect(Buffer.from(parsed.chunks[0].command.slice(10)).toString()).toBe(result.stdout)
  })

  it('an object that only looks like an AbortSignal is refused; a signal that fires while listened to runs nothing', async () => {
    const { dir, path, runtime } = setup('touch ran')
    const fake = await runtime.run(path, 0, { signal: { aborted: false } as unknown as AbortSignal }).catch((e) => e)
    expect(fake).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    const reason = new Error('right away')
    const eager = {
      aborted: false,
      reason,
      addEventListener: (_: string, listener: () => void) => listener(),
      removeEventListener: () => {},
    }
    const err = await runtime.run(path, 0, { signal: eager as unknown as AbortSignal }).catch((e) => e)
    expect(err).toMatchObject({ code: 'ABORT_ERR', cause: reason })
    await sleep(100)
    expect(existsSync(join(dir, 'ran'))).toBe(false)
  })

  it('a program found in PATH but not executable is EACCES, as spawn reports it', async () => {
    const dir = tempDir()
    const bin = join(dir, 'bin')
    execFileSync('mkdir', [bin])
    writeFileSync(join(bin, 'not-runnable'), '#!/bin/sh\necho no\n', { mode: 0o644 })
    const path = writeSpec(dir, specOf('not-runnable'))
    const err = await new WorkerRuntime({ workspaceDir: dir }).run(path, 0, { env: { PATH: bin } }).catch((e) => e)
    expect(err).toMatchObject({ code: 'EACCES', message: 'spawn not-runnable EACCES' })
    const missing = await new WorkerRuntime({ workspaceDir: dir }).run(path, 0, { env: { PATH: dir } }).catch((e) => e)
    expect(missing).toMatchObject({ code: 'ENOENT', message: 'spawn not-runnable ENOENT' })
  })

  it('a number past a double’s range, which JSON.parse reads as Infinity, is no error: in another chunk or as the id', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, '{"id":1e400,"assetsUrl":"s3://b/a.zip","chunks":[{"id":1e400,"command":"false"},{"id":-' + '9'.repeat(400) + '},{"id":0,"command":"echo ran"}]}')
    let seen: unknown
    const storage = { downloadAssetBundle: (jobId: unknown) => void (seen = jobId) }
    const result = await new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0)
    expect(result.stdout).toBe('ran\n')
    expect(seen).toBe(Infinity)
    const perJob = await new WorkerRuntime({ workspaceDir: dir, storage, perJobWorkspace: true }).run(path, 0)
    expect(perJob.stdout).toBe('ran\n')
    expect(readdirSync(dir).some((name) => name.startsWith('Infinity~'))).toBe(true)
  })

  it('a spec id of any depth reaches the adapter as JSON.parse makes it', async () => {
    const dir = tempDir()
    const id = `{"a":${'['.repeat(300)}1e400,"\\ud800"${']'.repeat(300)},"a":{"b":-0}}`
    const path = writeSpec(dir, `{"id":${id},"assetsUrl":"s3://b/a.zip","chunks":[{"id":0,"command":"true"}]}`)
    let seen: unknown
    const storage = { downloadAssetBundle: (jobId: unknown) => void (seen = jobId) }
    await new WorkerRuntime({ workspaceDir: dir, storage }).run(path, 0)
    expect(seen).toEqual(JSON.parse(id))
    expect(Object.is((seen as { a: { b: number } }).a.b, -0)).toBe(true)
  })

  it('a file: URL with an encoded / or NUL is refused, as fileURLToPath refuses it, never read as another file', async () => {
    const dir = tempDir()
    execFileSync('mkdir', [join(dir, 'd1')])
    writeSpec(join(dir, 'd1'), specOf('echo other file'))
    const runtime = new WorkerRuntime({ workspaceDir: dir })
    const slash = await runtime.run(`file://${dir}/d1%2Fjob.json`, 0).catch((e) => e)
    expect(slash).toMatchObject({ code: 'ERR_INVALID_URL', name: 'TypeError' })
    expect(slash.message).toContain('encoded / characters')
    const nul = await runtime.run(`file://${dir}/d1/job.json%00`, 0).catch((e) => e)
    expect(nul).toMatchObject({ code: 'ERR_INVALID_URL', name: 'TypeError' })
    expect(nul.message).toContain('NUL bytes')
  })

  it('NODE_EXTRA_CA_CERTS naming a device or a FIFO is skipped with a warning, never read', () => {
    const dir = tempDir()
    execFileSync('mkfifo', [join(dir, 'fifo')])
    // Node reads the variable at its start (and would wait for a FIFO's writer itself): the
    // FIFO is named once Node runs.
    for (const [file, atStart] of [['/dev/zero', true], [join(dir, 'fifo'), false]] as const) {
      const r = spawnSync(process.execPath, ['-e', `
        ${atStart ? '' : `process.env.NODE_EXTRA_CA_CERTS = ${JSON.stringify(file)}`}
        const { WorkerRuntime } = require(${JSON.stringify(addon)})
        const rt = new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} })
        console.log('made', rt.workspaceDir.length > 0)
      `], { env: { ...process.env, NODE_EXTRA_CA_CERTS: atStart ? file : '' }, encoding: 'utf8', timeout: 30_000 })
      expect(r.status, file).toBe(0)
      expect(r.stdout).toBe('made true\n')
      expect(r.stderr).toContain(`Ignoring extra certs from \`${file}\`, load failed: not a regular file`)
    }
  })

  it('a downloadAssetBundle replaced or spied on after the runtime was made is the one called, as a method', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { id: 'j', assetsUrl: 's3://b/a.zip', chunks: [{ id: 0, command: 'true' }] })
    const calls: string[] = []
    const storage: { downloadAssetBundle: (...args: unknown[]) => unknown } = { downloadAssetBundle: () => void calls.push('original') }
    const runtime = new WorkerRuntime({ workspaceDir: dir, storage: storage as never })
    storage.downloadAssetBundle = function (this: unknown) {
      calls.push(this === storage ? 'replaced, as a method' : 'replaced, detached')
    }
    await runtime.run(path, 0)
    expect(calls).toEqual(['replaced, as a method'])
    ;(storage as { downloadAssetBundle: unknown }).downloadAssetBundle = 'gone'
    const err = await runtime.run(path, 0).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    expect(err.message).toContain('config.storage.downloadAssetBundle')
  })

  it('an env key named __proto__ is a variable like any other, as for spawn', async () => {
    const { path, runtime } = setup('sh -c "env | grep -c ^__proto__=x$; echo $A"')
    const result = await runtime.run(path, 0, { env: JSON.parse('{"__proto__":"x","A":"1"}') })
    expect(result.stdout).toBe('1\n1\n')
  })

  it('signalRun still finds a running run when a run of another runtime with the same options and id ends', async () => {
    const { signalRun } = require(join(root, 'lib', 'worker-runtime.js'))
    const dir = tempDir()
    const [go, ready] = [join(dir, 'go'), join(dir, 'ready')]
    const path = writeSpec(
      dir,
      specOf(`sh -c "while [ ! -e '${go}' ]; do sleep 0.02; done"`, `sh -c "trap 'exit 5' USR1; touch '${ready}'; while :; do sleep 0.02; done"`),
    )
    const options: RunOptions = { timeout: 20_000 }
    const [a, b] = [new WorkerRuntime({ workspaceDir: dir }), new WorkerRuntime({ workspaceDir: dir })]
    const first = a.run(path, 0, options) // run 1 of runtime A
    const second = b.run(path, 1, options) // run 1 of runtime B, the last started with these options
    expect(await eventually(() => existsSync(ready))).toBe(true)
    writeFileSync(go, '')
    expect((await first).exitCode).toBe(0)
    expect(signalRun(options, 'SIGUSR1')).toBe(true)
    expect((await second).exitCode).toBe(5)
    expect(signalRun(options, 'SIGUSR1')).toBe(false)
  })
})
