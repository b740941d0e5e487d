// Soak: many runs at high concurrency against one runtime, mixing successes, failures,
// timeouts, aborts (with odd reasons too), bad specs, callbacks that throw anything, worker
// threads terminated mid-run, all while the JavaScript thread keeps writing process.env; then
// checks that every promise settled exactly once with the expected outcome, that no child
// process is left, that RSS stayed flat after warm-up, and that no file descriptor leaked.
//
//   npm run soak                      20,000 runs at concurrency 200
//   npm run soak -- --runs 2000 --concurrency 100
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'

import { WorkerRuntime } from '../index.js'

const addon = join(dirname(fileURLToPath(import.meta.url)), '..', 'index.js')

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '20000' }, concurrency: { type: 'string', default: '200' } },
})
const total = Number(values.runs)
const concurrency = Number(values.concurrency)

const dir = mkdtempSync(join(tmpdir(), 'hwr-soak-'))
const spec = join(dir, 'job.json')
writeFileSync(
  spec,
  JSON.stringify({
    id: 'soak',
    chunks: [
      { id: 0, command: 'echo ok' },
      { id: 1, command: 'sh -c "exit 3"' },
      { id: 2, command: 'sleep 5' },
      { id: 3, command: 'sh -c "echo streamed; echo to-stderr >&2"' },
      { id: 4, command: 'sh -c "echo $SOAK_VALUE"' },
      { id: 5, command: 'sh -c "echo started; exec sleep 30"' },
    ],
  }),
)
const broken = join(dir, 'broken.json')
writeFileSync(broken, '{"chunks": [')
const runtime = new WorkerRuntime({ workspaceDir: join(dir, 'ws') })

// Thrown by output callbacks, in turn; each throw is one warning, counted instead of printed.
const thrown = [Symbol('soak'), { a: 1 }, 42, 'a string', new Error('an error')]
let throwingRuns = 0
let warnings = 0
process.removeAllListeners('warning')
process.on('warning', (w) => {
  if (w.name === 'HeliosWorkerRuntimeWarning') warnings++
  else console.error(w)
})

/** A worker thread that starts a long run, terminated as soon as the run's command started. */
function terminatedWorker() {
  return new Promise((resolve, reject) => {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads')
       const { WorkerRuntime } = require(${JSON.stringify(addon)})
       new WorkerRuntime({ workspaceDir: ${JSON.stringify(join(dir, 'ws'))} })
         .run(${JSON.stringify(spec)}, 5, { onStdout: (s) => s.includes('started') && parentPort.postMessage('started') })`,
      { eval: true },
    )
    worker.once('message', () => worker.terminate().then(resolve, reject))
    worker.once('error', reject)
  })
}

/** Each kind of run: how to start it (given its index), and what its outcome must be. */
const kinds = [
  ['success', () => runtime.run(spec, 0), (r) => r.ok && r.value.exitCode === 0 && r.value.stdout === 'ok\n'],
  ['failure', () => runtime.run(spec, 1), (r) => r.ok && r.value.exitCode === 3],
  [
    'timeout',
    () => runtime.run(spec, 2, { timeout: 50, killGracePeriod: 50 }),
    // Held back behind the others past its 50 ms, a run rejects before its command starts.
    (r) => (r.ok && r.value.timedOut === true && r.value.exitCode === -1) || (!r.ok && r.error.code === 'ERR_RUN_TIMEOUT'),
  ],
  [
    'abort',
    () => runtime.run(spec, 2, { signal: AbortSignal.timeout(20) }),
    (r) => !r.ok && r.error.code === 'ABORT_ERR' && r.error.name === 'AbortError',
  ],
  ['bad spec', () => runtime.run(broken, 0), (r) => !r.ok && r.error.code === 'ERR_INVALID_JOB_SPEC'],
  ['no such chunk', () => runtime.run(spec, 9), (r) => !r.ok && r.error.code === 'ERR_CHUNK_NOT_FOUND'],
  [
    'streamed',
    () => {
      let streamed = ''
      return runtime.run(spec, 3, { onStdout: (s) => (streamed += s) }).then((value) => ({ ...value, streamed }))
    },
    (r) => r.ok && r.value.streamed === 'streamed\n' && r.value.stderr === 'to-stderr\n',
  ],
  ['env', (i) => runtime.run(spec, 4, { env: { SOAK_VALUE: String(i) } }).then((value) => ({ ...value, i })), (r) => r.ok && r.value.stdout === `${r.value.i}\n`],
  [
    'throwing callback',
    (i) => {
      throwingRuns++
      return runtime.run(spec, 3, {
        onStdout: () => {
          throw thrown[i % thrown.length]
        },
      })
    },
    (r) => r.ok && r.value.stdout === 'streamed\n' && r.value.stderr === 'to-stderr\n',
  ],
  [
    'odd abort reason',
    (i) => {
      const controller = new AbortController()
      const reason = thrown[i % thrown.length]
      setTimeout(() => controller.abort(reason), 20)
      return runtime.run(spec, 2, { signal: controller.signal }).catch((error) => Promise.reject(Object.assign(error, { expected: reason })))
    },
    (r) => !r.ok && r.error.code === 'ABORT_ERR' && r.error.cause === r.error.expected,
  ],
]

const fds = () => readdirSync('/proc/self/fd').length
/** Children of this process, but the watcher that guards against orphans. */
function children() {
  const found = []
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) !== process.pid) continue
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      if (!cmdline.includes('helios-worker-runtime-watcher')) found.push(`${pid} ${cmdline.replaceAll('\0', ' ')}`)
    } catch {
      // gone while looking
    }
  }
  return found
}

const settled = new Uint8Array(total)
const wrong = []
let next = 0
let baseline = null
const started = performance.now()
// Warm-up: the first quarter of the runs, while V8 and the allocator grow to their working size.
const warmUp = Math.floor(total / 4)

async function worker() {
  while (next < total) {
    const i = next++
    const [name, start, expected] = kinds[i % kinds.length]
    const outcome = await start(i).then(
      (value) => ({ ok: true, value }),
      (error) => ({ ok: false, error }),
    )
    settled[i]++
    if (!expected(outcome)) wrong.push(`${i} ${name}: ${outcome.ok ? JSON.stringify(outcome.value) : `${outcome.error.code} ${outcome.error.message}`}`)
    if (i === warmUp) {
      globalThis.gc?.()
      baseline = { rss: process.memoryUsage().rss }
    }
  }
}

const fdsBefore = (await runtime.run(spec, 0), fds())
// The JavaScript thread keeps writing its environment while runs spawn.
let writing = true
let writes = 0
// A few values in turn: glibc's setenv keeps every distinct string it was given (by design),
// which would show as growth that is not this package's.
const writeEnv = () => {
  process.env[`SOAK_NOISE_${writes++ % 50}`] = String(writes % 7)
  if (writing) setImmediate(writeEnv)
}
writeEnv()
// A worker thread terminated mid-run, now and then.
const workerRounds = Math.max(1, Math.floor(total / 2000))
let workersTerminated = 0
const workers = (async () => {
  for (let k = 0; k < workerRounds; k++) {
    await terminatedWorker()
    workersTerminated++
  }
})()
await Promise.all([...Array.from({ length: concurrency }, worker), workers])
writing = false
const elapsed = performance.now() - started
globalThis.gc?.()
await new Promise((resolve) => setTimeout(resolve, 200))
const rssAfter = process.memoryUsage().rss
const leftovers = children()
const fdsAfter = fds()
rmSync(dir, { recursive: true, force: true })

const counts = Object.fromEntries(kinds.map(([name], k) => [name, Math.ceil((total - k) / kinds.length)]))
console.log(`${total} runs at concurrency ${concurrency} in ${(elapsed / 1000).toFixed(1)} s:`, counts)
console.log(`env writes ${writes}; worker threads terminated mid-run ${workersTerminated}; warnings ${warnings} for ${throwingRuns} throwing callbacks`)
console.log(`RSS after warm-up ${(baseline.rss / 2 ** 20).toFixed(1)} MiB, after all ${(rssAfter / 2 ** 20).toFixed(1)} MiB; fds ${fdsBefore} -> ${fdsAfter}; children left ${leftovers.length}`)
assert.deepEqual(wrong, [], 'every run has the expected outcome')
assert.ok(settled.every((n) => n === 1), 'every promise settled exactly once')
assert.deepEqual(leftovers, [], 'no child process is left')
assert.equal(warnings, throwingRuns, 'one warning per throwing callback')
assert.equal(workersTerminated, workerRounds, 'every worker thread was terminated')
assert.ok(Math.abs(rssAfter - baseline.rss) <= 20 * 2 ** 20, 'RSS stays within 20 MiB after warm-up')
assert.equal(fdsAfter, fdsBefore, 'no file descriptor leaked')
console.log('soak: all checks passed')
