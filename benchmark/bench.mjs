// The native WorkerRuntime against the plain-Node way of doing the same job
// (benchmark/plain-runtime.mjs, what the TypeScript runtime does), in the same process run,
// interleaved, several rounds, medians, reported as ratios (plain-Node time / native time).
// Each spec case runs twice: with one runtime reused, and with a new runtime per run, as the
// infrastructure package's Lambda handler and Cloud Run server create them. Results are
// checked to be the same before anything is timed. It ends with a one-line summary and exits 0
// when it ran: a missed target is a finding, not a crash.
//
//   npm run bench              all cases, full size (a few minutes)
//   npm run bench -- --quick   a short version
//   node benchmark/bench.mjs --no-build   skip the release build (it must already exist)
//   --only=file,http,https,bigspec,bigout,lag,load,cold   run some cases
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const quick = process.argv.includes('--quick')
const onlyArg = process.argv.find((a) => a.startsWith('--only='))
const only = onlyArg ? new Set(onlyArg.slice(7).split(',')) : null
const want = (name) => !only || only.has(name)
const size = (full, short) => (quick ? short : full)

// ---- build: the release addon; then the private CA, trusted by both sides the way Node
// users trust one: NODE_EXTRA_CA_CERTS, which Node reads at startup, so the measuring
// process is started again with it ----
if (!process.env.HWR_BENCH_WORK && !process.argv.includes('--no-build')) {
  const sh = (cmd, args) => {
    const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' })
    if (r.status !== 0) process.exit(r.status ?? 1)
  }
  sh('npm', ['run', 'build'])
}
if (!process.env.HWR_BENCH_WORK) {
  const work = mkdtempSync(join(tmpdir(), 'hwr-bench-'))
  const sh = (...args) => execFileSync('openssl', args, { cwd: work, stdio: 'pipe' })
  let extra = {}
  try {
    sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Helios Bench CA', '-keyout', 'ca.key', '-out', 'ca.pem',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign')
    sh('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr')
    writeFileSync(join(work, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
    sh('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.pem', '-extfile', 'ext.cnf')
    extra = { NODE_EXTRA_CA_CERTS: join(work, 'ca.pem') }
  } catch {
    console.error('  (no openssl command: the https cases are skipped)')
  }
  const child = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, ...extra, HWR_BENCH_WORK: work },
  })
  rmSync(work, { recursive: true, force: true })
  process.exit(child.status ?? 1)
}

const nodeFile = join(root, `worker-runtime.${process.platform}-${process.arch}${process.platform === 'linux' ? '-gnu' : ''}.node`)
assert.ok(statSync(nodeFile).size < 20 * 2 ** 20, 'a release build of the addon is loaded (a debug build is ~75 MB)')

const { WorkerRuntime } = await import('../index.js')
const { PlainWorkerRuntime } = await import('./plain-runtime.mjs')

// ---- helpers ----
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const ms = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(3)) + ' ms'
const mib = (x) => `${(x / 2 ** 20).toFixed(1)} MiB`
async function timeEach(n, fn) {
  const times = []
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await fn(i)
    times.push(performance.now() - t)
  }
  return times
}
const normalise = (r) => ({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr })

const work = process.env.HWR_BENCH_WORK
const workspaceDir = join(work, 'ws')
const native = new WorkerRuntime({ workspaceDir })
const plain = new PlainWorkerRuntime({ workspaceDir })

// Specs: a small one, and one of 100,000 chunks whose last chunk is wanted.
const small = { id: 'bench', chunks: [{ id: 0, command: 'true' }, { id: 1, command: 'echo hi' }] }
writeFileSync(join(work, 'small.json'), JSON.stringify(small))
// Written from a function: the benchmark's own 100,000 objects must not stay on the heap,
// where every later garbage collection (and so the lag case's stalls) would pay for them.
function bigSpec() {
  const big = {
    id: 'big',
    metadata: { totalFrames: 3_000_000, fps: 30, width: 1920, height: 1080, duration: 100_000 },
    chunks: Array.from({ length: 100_000 }, (_, id) => ({
      id,
      startFrame: id * 30,
      frameCount: 30,
      outputFile: `s3://helios-renders/job-big/chunks/chunk-${String(id).padStart(6, '0')}.mp4`,
      command: `ffmpeg -y -loglevel error -ss ${id} -t 1 -i input.mp4 -c:v libx264 -preset veryfast chunk-${id}.mp4`,
    })),
    mergeCommand: 'ffmpeg -f concat -i list.txt -c copy out.mp4',
  }
  big.chunks[99_999].command = 'true'
  return big
}
writeFileSync(join(work, 'big.json'), JSON.stringify(bigSpec()))
const bigBytes = statSync(join(work, 'big.json')).size
writeFileSync(join(work, 'out.json'), JSON.stringify({ chunks: [{ id: 0, command: 'head -c 268435456 /dev/zero' }, { id: 1, command: 'true' }] }))

const server = spawn(process.execPath, [join(root, 'benchmark', 'serve.mjs'), work], { stdio: ['pipe', 'pipe', 'inherit'] })
const [port, tlsPort] = await new Promise((resolve) => server.stdout.once('data', (d) => resolve(String(d).trim().split(' ').map(Number))))
const url = (name) => `http://127.0.0.1:${port}/${name}`
const tlsUrl = (name) => `https://127.0.0.1:${tlsPort}/${name}`

const rows = []
function report(name, nativeValue, plainValue, ratio, target, met, note = '') {
  rows.push({ name, native: nativeValue, plain: plainValue, ratio: ratio == null ? '' : `${ratio.toFixed(2)}x`, target, met: met ? 'yes' : 'NO', note })
  console.error(`  ${name}: native ${nativeValue}, plain ${plainValue}${ratio == null ? '' : `, ratio ${ratio.toFixed(2)}`} — ${met ? 'met' : 'MISSED'} (${target})`)
}

/** Interleave native and plain for `rounds` rounds of `batch` runs each, which side goes first
 * alternating. Short batches: this host's speed changes over seconds, and a long batch could
 * fall into a slow stretch on one side only. */
async function interleaved(rounds, batch, runNative, runPlain) {
  const n = []
  const p = []
  // Collect each side's garbage before the other side runs, so that neither pays for the
  // other's (V8's concurrent GC threads would otherwise compete for the same cores).
  const settle = () => globalThis.gc?.()
  const sides = [
    [n, runNative],
    [p, runPlain],
  ]
  for (let r = 0; r < rounds; r++) {
    for (const [times, run] of r % 2 ? [...sides].reverse() : sides) {
      settle()
      times.push(...(await timeEach(batch, run)))
    }
  }
  return { native: median(n), plain: median(p) }
}

// ---- specs from a file, over HTTP and over HTTPS, small and 20 MB; a runtime reused, and a
// new runtime per run ----
const specCases = [
  ['file', 'small spec from a file', join(work, 'small.json'), 0, 2.5],
  ['http', 'small spec over loopback HTTP', url('small.json'), 0, 2.5],
  ['https', 'small spec over loopback HTTPS, private CA', tlsPort ? tlsUrl('small.json') : null, 0, 2.5],
  ['bigspec file', `${mib(bigBytes)} spec, 100,000 chunks, last one, from a file`, join(work, 'big.json'), 99_999, 4],
  ['bigspec http', `${mib(bigBytes)} spec, 100,000 chunks, last one, over HTTP`, url('big.json'), 99_999, 3],
]
for (const [name, what, jobPath, chunk, target] of specCases) {
  if (!want(name.split(' ')[0]) || !jobPath) continue
  const big = chunk > 0
  assert.deepEqual(normalise(await native.run(jobPath, chunk)), normalise(await plain.run(jobPath, chunk)))
  const [rounds, batch] = big ? [size(10, 2), size(2, 2)] : [size(30, 6), size(60, 30)]
  for (const [pattern, n, p] of [
    ['reused', () => native.run(jobPath, chunk), () => plain.run(jobPath, chunk)],
    [
      'per run',
      () => new WorkerRuntime({ workspaceDir }).run(jobPath, chunk),
      () => new PlainWorkerRuntime({ workspaceDir }).run(jobPath, chunk),
    ],
  ]) {
    const m = await interleaved(rounds, batch, n, p)
    const ratio = m.plain / m.native
    report(`${name}, ${pattern === 'reused' ? 'runtime reused' : 'runtime per run'}`, ms(m.native), ms(m.plain), ratio, `>= ${target}x`, ratio >= target, what)
  }
}

// ---- bigout: 256 MB on stdout ----
if (want('bigout')) {
  const path = join(work, 'out.json')
  const n = await native.run(path, 0)
  assert.equal(n.exitCode, 0)
  assert.equal(n.stdoutTruncated, true)
  const m = await interleaved(size(3, 1), 1, () => native.run(path, 0), () => plain.run(path, 0))
  const probe = (which) =>
    JSON.parse(
      execFileSync(process.execPath, ['--expose-gc', join(root, 'benchmark', 'rss-probe.mjs'), which, path, workspaceDir], {
        encoding: 'utf8',
        maxBuffer: 2 ** 20,
      }),
    )
  const rssNative = probe('native')
  const rssPlain = probe('plain')
  assert.equal(rssPlain.stdoutLength, 268435456)
  const maxBuffer = 16 * 2 ** 20
  const ratio = m.plain / m.native
  report('bigout', `${ms(m.native)}, RSS +${mib(rssNative.growth)}`, `${ms(m.plain)}, RSS +${mib(rssPlain.growth)}`, ratio,
    '>= 1x; RSS growth <= maxBuffer + 32 MiB', ratio >= 1 && rssNative.growth <= maxBuffer + 32 * 2 ** 20, '256 MiB written to stdout; default maxBuffer 16 MiB')
}

// ---- lag: 100 concurrent runs of `echo`, worst event-loop stall ----
if (want('lag')) {
  const path = join(work, 'small.json')
  async function worstStall(rt) {
    const worst = []
    // One round first, not counted: the first calls of any code run before it is compiled.
    for (let r = -1; r < size(5, 2); r++) {
      const h = monitorEventLoopDelay({ resolution: 1 })
      h.enable()
      // The histogram counts from its timer's first tick on: a stall before that goes unseen,
      // and the 100 calls to `run` themselves are part of what is measured.
      await new Promise((resolve) => setTimeout(resolve, 5))
      await Promise.all(Array.from({ length: 100 }, () => rt.run(path, 1)))
      h.disable()
      if (r >= 0) worst.push(h.max / 1e6)
    }
    return Math.max(...worst)
  }
  // Each side starts from a collected heap, as the interleaved cases do.
  globalThis.gc?.()
  const n = await worstStall(native)
  globalThis.gc?.()
  const p = await worstStall(plain)
  report('lag', ms(n), ms(p), p / n, 'native worst stall <= 10 ms', n <= 10, '100 concurrent runs of echo; worst of several rounds')
}

// ---- load: 10,000 runs at concurrency 100; no failure, no leak ----
if (want('load')) {
  const path = join(work, 'small.json')
  const total = size(10_000, 2_000)

  async function load(rt, total, onThousand) {
    let next = 0
    let failed = 0
    let done = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (next < total) {
          next++
          const r = await rt.run(path, 1).catch(() => null)
          if (!r || r.exitCode !== 0 || r.stdout !== 'hi\n') failed++
          if (++done === 1000) onThousand?.()
        }
      }),
    )
    return { failed, elapsed: performance.now() - started }
  }
  globalThis.gc?.()
  let rssAtThousand = 0
  const n = await load(native, total, () => (rssAtThousand = process.memoryUsage().rss))
  globalThis.gc?.()
  const rssAfter = process.memoryUsage().rss
  // The plain way is slow at this (each spawn forks the whole Node process): a fifth of the
  // runs is enough to compare the time per run.
  const plainRuns = total / 5
  const p = await load(plain, plainRuns)
  const growth = rssAfter - rssAtThousand
  report('load', `${ms(n.elapsed / total)} a run, ${n.failed} failed`, `${ms(p.elapsed / plainRuns)} a run, ${p.failed} failed`,
    p.elapsed / plainRuns / (n.elapsed / total), 'no failure; RSS within 20 MiB of RSS after 1,000',
    n.failed === 0 && Math.abs(growth) <= 20 * 2 ** 20,
    `${total} native runs (${plainRuns} plain) at concurrency 100; native RSS after 1,000 ${mib(rssAtThousand)}, after all ${mib(rssAfter)}`)
}

// ---- cold: require in a fresh process ----
if (want('cold')) {
  // The time `require` itself takes in a fresh process is what it adds over `node -e 0`.
  const requireMs = () =>
    Number(
      execFileSync(process.execPath, [
        '-e',
        `const t = process.hrtime.bigint(); require(${JSON.stringify(root)}); console.log(Number(process.hrtime.bigint() - t) / 1e6)`,
      ]),
    )
  const wall = (args) => {
    const t = performance.now()
    execFileSync(process.execPath, args)
    return performance.now() - t
  }
  const added = []
  const bare = []
  const loaded = []
  for (let i = 0; i < size(15, 5); i++) {
    added.push(requireMs())
    bare.push(wall(['-e', '0']))
    loaded.push(wall(['-e', `require(${JSON.stringify(root)})`]))
  }
  const bytes = statSync(nodeFile).size
  report('cold', `require ${ms(median(added))}, .node ${mib(bytes)}`, `node -e 0: ${ms(median(bare))}`, null, '<= 20 ms added; .node <= 8 MiB',
    median(added) <= 20 && bytes <= 8 * 2 ** 20, `wall clock: node -e 0 ${ms(median(bare))}, with the require ${ms(median(loaded))}`)
}

server.stdin.end()
rmSync(work, { recursive: true, force: true })

const cpu = cpus()[0]?.model ?? 'unknown CPU'
console.log(`\n${quick ? 'Quick run' : 'Full run'} on ${cpus().length} × ${cpu}, ${mib(totalmem())} RAM, Node ${process.version}, ${process.platform}-${process.arch}\n`)
console.log('| case | native | plain Node | ratio | target | met | notes |')
console.log('| --- | --- | --- | --- | --- | --- | --- |')
for (const r of rows) console.log(`| ${r.name} | ${r.native} | ${r.plain} | ${r.ratio} | ${r.target} | ${r.met} | ${r.note} |`)
const missed = rows.filter((r) => r.met !== 'yes').map((r) => r.name)
console.log(`\nbench: ${rows.length - missed.length} of ${rows.length} targets met${missed.length ? `; missed: ${missed.join('; ')}` : ''}`)
