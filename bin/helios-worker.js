#!/usr/bin/env node
// helios-worker: run one chunk of a Helios render job, or its merge, as the one process of a
// container started by Kubernetes (Indexed Job), AWS Batch (array job), Cloud Run Jobs, Slurm
// (array job) or by hand.
'use strict'

const { spawn } = require('node:child_process')
const { mkdtempSync, rmSync, statSync } = require('node:fs')
const { constants, tmpdir } = require('node:os')
const { join, resolve } = require('node:path')
const { parseArgs } = require('node:util')

const { version } = require('../package.json')

/** The variables each engine sets to tell a copy of the container its index. */
const INDEX_VARIABLES = [
  ['JOB_COMPLETION_INDEX', 'Kubernetes Indexed Job'],
  ['AWS_BATCH_JOB_ARRAY_INDEX', 'AWS Batch array job'],
  ['CLOUD_RUN_TASK_INDEX', 'Cloud Run job'],
  ['SLURM_ARRAY_TASK_ID', 'Slurm array job'],
]

const HELP = `Usage: helios-worker <jobPath> [chunkId] [options]
       helios-worker merge <jobPath> [options]

Run one chunk of a Helios render job: fetch the job spec, run the chunk's command in a
workspace, stream its output, and exit with its exit code. With 'merge', run the spec's
mergeCommand the same way, once every chunk has run.

Arguments:
  jobPath               the job spec: an http(s) URL, a file:// URL or a file path (a spec
                        file named 'merge' is run as ./merge)
  chunkId               the chunk to run: the chunk whose id equals it; when omitted, the
                        index the engine gives this container, from
${INDEX_VARIABLES.map(([name, engine]) => `                          ${name.padEnd(27)}${engine}`).join('\n')}
                        an explicit chunkId wins; variables that disagree are a usage error.
                        Engines number their copies 0..N-1 (Slurm: --array=0-<N-1>), so a
                        spec for an engine numbers its chunks 0..N-1. 'merge' reads no index.

Options:
  --workspace DIR       where the command runs (default: $HELIOS_WORKSPACE_DIR, else a new
                        helios-worker-* directory under the system's temporary directory,
                        removed again when helios-worker ends)
  --per-job             run in <workspace>/<job id>, the job id made safe for a file name,
                        so that jobs sharing a workspace never share a file
  --timeout MS          end the run after MS milliseconds, at most 2147483647 (exit code 124):
                        its command's process group, or the loading that comes before it
  --json                print the result (without the output, which was streamed) as one
                        JSON line of its own at the end
  -h, --help            print this help
  -v, --version         print the version

Exit codes:
  the command's own exit code; 128 + the signal number when a signal ended it; 124 when the
  timeout ended it; 2 for a usage error; 1 for any other failure (message on stderr),
  including a chunk that exits 0 but leaves its declared outputFile missing or empty.
  SIGTERM, SIGINT, SIGHUP or SIGQUIT is passed on to the command's process group, which is
  killed if it has not ended 5 s later (at once on a second such signal, or when the command
  has not started yet); then helios-worker exits 128 + the signal number (143, 130, 129, 131).
  SIGUSR1, SIGUSR2 and SIGALRM are passed on to the command's process group, nothing more.`

/** The signals that stop a run: passed on to the command's group, which is killed when it has
 * not ended after `KILL_GRACE_MS` (a second one kills it at once); the CLI then exits 128 + n. */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT']
/** The signals only passed on (Slurm's `--signal`, a checkpoint request): SIGUSR1 would open
 * Node's inspector, the others end Node without its clean-up. */
const PASSED_SIGNALS = ['SIGUSR1', 'SIGUSR2', 'SIGALRM']
/** As the runtime's default `killGracePeriod`. */
const KILL_GRACE_MS = 5000

class UsageError extends Error {}

function nonNegativeInteger(text, what) {
  const trimmed = text.trim()
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(Number(trimmed))) {
    throw new UsageError(`${what} must be a non-negative integer, got ${JSON.stringify(text)}`)
  }
  return Number(trimmed)
}

/** The chunk to run: the argument, else the one index variable that is set (or agree). */
function chunkFrom(argument, env) {
  if (argument !== undefined) return nonNegativeInteger(argument, 'chunkId')
  const set = INDEX_VARIABLES.filter(([name]) => env[name] !== undefined && env[name] !== '')
  if (set.length === 0) {
    throw new UsageError(
      `no chunkId: give it as an argument, or set one of ${INDEX_VARIABLES.map(([name]) => name).join(', ')}`,
    )
  }
  const values = set.map(([name, engine]) => [name, nonNegativeInteger(env[name], `${name} (${engine})`)])
  if (new Set(values.map(([, value]) => value)).size > 1) {
    throw new UsageError(`the chunk index variables disagree: ${values.map(([name, value]) => `${name}=${value}`).join(', ')}`)
  }
  return values[0][1]
}

function parse(argv, env) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      workspace: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
      'per-job': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', short: 'v', default: false },
    },
  })
  if (values.help || values.version) return values
  // `merge` first is the subcommand; a spec file of that name is still reachable as ./merge.
  const merge = positionals[0] === 'merge'
  const rest = merge ? positionals.slice(1) : positionals
  if (rest.length < 1) throw new UsageError(merge ? 'merge: missing jobPath' : 'missing jobPath')
  if (rest[0] === '') throw new UsageError('jobPath is empty')
  if (merge && rest.length > 1) throw new UsageError(`merge takes no chunkId, got '${rest[1]}'`)
  if (rest.length > 2) throw new UsageError(`unexpected argument '${rest[2]}'`)
  const timeout = values.timeout === undefined ? undefined : nonNegativeInteger(values.timeout, '--timeout')
  if (timeout > 2 ** 31 - 1) throw new UsageError(`--timeout must be at most 2147483647 (ms), got ${values.timeout}`)
  if (values.workspace === '') throw new UsageError('--workspace needs a directory, got an empty one')
  const chunkId = merge ? undefined : chunkFrom(rest[1], env)
  return {
    json: values.json,
    perJob: values['per-job'],
    merge,
    jobPath: rest[0],
    chunkId,
    timeout,
    workspace: values.workspace ?? (env.HELIOS_WORKSPACE_DIR || undefined),
  }
}

async function main(argv, env) {
  // Listened to for as long as the process lives, before anything is made: a signal at any
  // moment, a second one during the clean-up included, ends the run and still lets the
  // workspace be removed.
  const controller = new AbortController()
  // The run's options: the run is found by them to pass a signal on.
  const runOptions = {}
  const passOn = (signal, graceMs) => require('../lib/worker-runtime.js').signalRun(runOptions, signal, graceMs)
  let stoppedBy = null
  // Named after the first stop signal, whose number the exit code is.
  const abort = () => controller.abort(new Error(`helios-worker received ${stoppedBy}`))
  for (const signal of STOP_SIGNALS) {
    process.on(signal, () => {
      if (stoppedBy) return abort()
      stoppedBy = signal
      if (passOn(signal, KILL_GRACE_MS)) setTimeout(abort, KILL_GRACE_MS).unref()
      else abort()
    })
  }
  for (const signal of PASSED_SIGNALS) process.on(signal, () => passOn(signal))
  /** The exit code of the signal that stopped the run, once one did. */
  const stopped = () => stoppedBy && 128 + constants.signals[stoppedBy]
  let options
  try {
    options = parse(argv, env)
  } catch (err) {
    process.stderr.write(`helios-worker: ${err.message}\nRun 'helios-worker --help' for usage.\n`)
    return 2
  }
  if (options.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  if (options.version) {
    process.stdout.write(`${version}\n`)
    return 0
  }
  if (stopped()) return stopped()
  options.ownWorkspace = options.workspace === undefined
  if (options.ownWorkspace) {
    try {
      options.workspace = mkdtempSync(join(tmpdir(), 'helios-worker-'))
    } catch (err) {
      const message = `cannot make a workspace: ${err.message}`
      if (options.json) {
        const head = options.merge ? { merge: true } : { chunkId: options.chunkId }
        process.stdout.write(`${JSON.stringify({ ...head, error: { code: err.code, message } })}\n`)
      }
      process.stderr.write(`helios-worker: ${message}\n`)
      return 1
    }
    removeWhenKilled(options.workspace)
  }

  // A reader that goes away (`| head`) or a log that fails (a full disk, EIO) must not end the
  // render: the command runs on, its output goes nowhere, the exit code is still its own.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})
  try {
    if (stopped()) return stopped()
    const code = await runCommand(options, controller.signal, stopped, runOptions)
    return stopped() || code
  } finally {
    // A workspace this process made for itself holds nothing anyone else will read.
    if (options.ownWorkspace) {
      try {
        rmSync(options.workspace, { recursive: true, force: true, maxRetries: 2 })
      } catch (err) {
        process.stderr.write(`helios-worker: could not remove the workspace ${options.workspace}: ${err.message}\n`)
      }
    }
  }
}

const write = (stream) => (text) => {
  if (!stream.destroyed && stream.writable) stream.write(text)
}

/** At most three decimals: a duration in microseconds is all anyone reads. */
const rounded = (x) => (typeof x === 'number' && Number.isFinite(x) ? Math.round(x * 1000) / 1000 : x)

/** What is wrong with the chunk's declared local outputFile after an exit 0, if anything. */
function outputProblem(result, declaredOutputPath) {
  // An older library has no way to tell what the chunk declared: nothing to check then.
  if (typeof declaredOutputPath !== 'function') return undefined
  const path = declaredOutputPath(result)
  if (typeof path !== 'string') return undefined
  // The library names the size of a regular file only: a directory is no output either.
  const bytes = result.outputBytes
  if (typeof bytes !== 'number') {
    let what = 'is missing'
    try {
      if (!statSync(path).isFile()) what = 'is not a file'
    } catch {}
    return `its outputFile ${path} ${what}`
  }
  return bytes === 0 ? `its outputFile ${path} is empty (0 bytes)` : undefined
}

/** A workspace of its own is removed even when this process is killed outright (SIGKILL, the
 * OOM killer): a shell in a group of its own waits for the end of a pipe only this process
 * holds, then removes it (already gone after a normal end). Without a shell, nothing more. */
function removeWhenKilled(dir) {
  try {
    const script = 'trap "" INT TERM HUP QUIT; while read -r _; do :; done; [ -e "$1" ] || exit 0; sleep 1; rm -rf -- "$1"'
    const child = spawn('/bin/sh', ['-c', script, 'helios-worker-cleanup', dir], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    })
    child.on('error', () => {})
    child.stdin.on('error', () => {})
    child.unref()
    child.stdin.unref()
  } catch {}
}

/** 128 + the number of signal `name` (a name, or the number of one without a name). */
const signalExit = (name) => 128 + (constants.signals[name] ?? (Number.parseInt(name, 10) || 0))

/** Run the chunk (or the merge) until it ends or `signal` aborts; `stopped()` is the exit
 * code of the process signal that aborted it, once one did. */
async function runCommand(options, signal, stopped, runOptions) {
  const { WorkerRuntime } = require('..')
  const { declaredOutputPath } = require('../lib/worker-runtime.js')
  // Whether the last byte the command wrote to stdout was a newline (nothing written counts).
  let atLineStart = true
  const toStdout = write(process.stdout)
  Object.assign(runOptions, {
    timeout: options.timeout,
    signal,
    onStdout: (text) => {
      if (text.length > 0) atLineStart = text.endsWith('\n')
      toStdout(text)
    },
    onStderr: write(process.stderr),
  })
  const what = options.merge ? 'the merge' : `chunk ${options.chunkId}`
  const head = () => ({
    ...(options.merge ? { merge: true } : { chunkId: options.chunkId }),
    workspace: resolve(options.workspace),
    ...(options.perJob ? { perJobWorkspace: true } : undefined),
  })
  /** The result line of `--json`, on a line of its own. */
  const printJson = (fields) => toStdout(`${atLineStart ? '' : '\n'}${JSON.stringify({ ...head(), ...fields })}\n`)
  try {
    const runtime = new WorkerRuntime({
      workspaceDir: options.workspace,
      ...(options.perJob ? { perJobWorkspace: true } : undefined),
    })
    let result
    if (options.merge) {
      if (typeof runtime.merge !== 'function') {
        process.stderr.write('helios-worker: merge: this version of the runtime has no merge()\n')
        return 1
      }
      result = await runtime.merge(options.jobPath, runOptions)
    } else {
      result = await runtime.run(options.jobPath, options.chunkId, runOptions)
    }
    const problem = result.exitCode === 0 && !options.merge ? outputProblem(result, declaredOutputPath) : undefined
    const failure = problem && `${what} exited 0 but ${problem}`
    if (options.json) {
      const { stdout, stderr, ...summary } = result
      for (const key of ['durationMs', 'cpuUserMs', 'cpuSystemMs']) {
        if (key in summary) summary[key] = rounded(summary[key])
      }
      printJson({ ...summary, ...(failure ? { error: { code: 'ERR_OUTPUT_MISSING', message: failure } } : undefined) })
    }
    if (result.timedOut) return 124
    if (result.signal) return signalExit(result.signal)
    if (failure) {
      process.stderr.write(`helios-worker: ${failure}\n`)
      return 1
    }
    return result.exitCode
  } catch (err) {
    // Stopped: what stopped it (`helios-worker received SIGTERM`), not the abort it caused.
    const message = (stopped() ? signal.reason?.message : err?.message) ?? String(err)
    if (options.json) printJson({ error: { code: err?.code, message } })
    if (stopped()) return stopped()
    process.stderr.write(`helios-worker: ${message}${err?.code ? ` (${err.code})` : ''}\n`)
    // The timeout covers the loading of the spec and the storage call too.
    return err?.code === 'ERR_RUN_TIMEOUT' ? 124 : 1
  }
}

main(process.argv.slice(2), process.env).then((code) => {
  process.exitCode = code
})
