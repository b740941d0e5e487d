#!/usr/bin/env node
// helios-worker: run one chunk of a Helios render job, as the one process of a container
// started by Kubernetes (Indexed Job), AWS Batch (array job), Cloud Run Jobs or by hand.
'use strict'

const { mkdtempSync, rmSync } = require('node:fs')
const { constants, tmpdir } = require('node:os')
const { join } = require('node:path')
const { parseArgs } = require('node:util')

const { version } = require('../package.json')

/** The variables each engine sets to tell a copy of the container its index. */
const INDEX_VARIABLES = [
  ['JOB_COMPLETION_INDEX', 'Kubernetes Indexed Job'],
  ['AWS_BATCH_JOB_ARRAY_INDEX', 'AWS Batch array job'],
  ['CLOUD_RUN_TASK_INDEX', 'Cloud Run job'],
]

const HELP = `Usage: helios-worker <jobPath> [chunkId] [options]

Run one chunk of a Helios render job: fetch the job spec, run the chunk's command in a
workspace, stream its output, and exit with its exit code.

Arguments:
  jobPath               the job spec: an http(s) URL, a file:// URL or a file path
  chunkId               the chunk to run; when omitted, the index the engine gives this
                        container: ${INDEX_VARIABLES.map(([name]) => name).join(', ')}

Options:
  --workspace DIR       where the command runs (default: $HELIOS_WORKSPACE_DIR, else a new
                        directory under the system's temporary directory, removed again
                        when the chunk ends)
  --timeout MS          end the chunk's process group after MS milliseconds (exit code 124)
  --json                print the result (without the output, which was streamed) as one
                        JSON line at the end
  -h, --help            print this help
  -v, --version         print the version

Exit codes:
  the chunk's own exit code; 128 + the signal number when a signal ended it; 124 when the
  timeout ended it; 2 for a usage error; 1 for any other failure (message on stderr).
  SIGTERM or SIGINT ends the chunk's process group, then exits 143 or 130.`

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
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', short: 'v', default: false },
    },
  })
  if (values.help || values.version) return values
  if (positionals.length < 1) throw new UsageError('missing jobPath')
  if (positionals.length > 2) throw new UsageError(`unexpected argument '${positionals[2]}'`)
  const timeout = values.timeout === undefined ? undefined : nonNegativeInteger(values.timeout, '--timeout')
  if (values.workspace === '') throw new UsageError('--workspace needs a directory, got an empty one')
  const chunkId = chunkFrom(positionals[1], env)
  const given = values.workspace ?? (env.HELIOS_WORKSPACE_DIR || undefined)
  return {
    ...values,
    jobPath: positionals[0],
    chunkId,
    timeout,
    workspace: given ?? mkdtempSync(join(tmpdir(), 'helios-worker-')),
    ownWorkspace: given === undefined,
  }
}

async function main(argv, env) {
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

  // A reader that goes away (`| head`) must not crash the worker: the chunk runs on, its
  // output goes nowhere, and the exit code is still the chunk's.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err) => {
      if (err.code !== 'EPIPE') throw err
    })
  }
  try {
    return await runChunk(options)
  } finally {
    // A workspace this process made for itself holds nothing anyone else will read.
    if (options.ownWorkspace) rmSync(options.workspace, { recursive: true, force: true })
  }
}

const write = (stream) => (text) => {
  if (!stream.destroyed && stream.writable) stream.write(text)
}

async function runChunk(options) {
  const { WorkerRuntime } = require('..')
  const controller = new AbortController()
  let stoppedBy = null
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => {
      stoppedBy = signal
      controller.abort(new Error(`helios-worker received ${signal}`))
    })
  }
  try {
    const runtime = new WorkerRuntime({ workspaceDir: options.workspace })
    const result = await runtime.run(options.jobPath, options.chunkId, {
      timeout: options.timeout,
      signal: controller.signal,
      onStdout: write(process.stdout),
      onStderr: write(process.stderr),
    })
    if (options.json) {
      const { stdout, stderr, ...summary } = result
      write(process.stdout)(`${JSON.stringify({ chunkId: options.chunkId, workspace: options.workspace, ...summary })}\n`)
    }
    if (result.timedOut) return 124
    if (result.signal) return 128 + (constants.signals[result.signal] ?? 0)
    return result.exitCode
  } catch (err) {
    if (stoppedBy) return 128 + constants.signals[stoppedBy]
    process.stderr.write(`helios-worker: ${err.message}${err.code ? ` (${err.code})` : ''}\n`)
    return 1
  }
}

main(process.argv.slice(2), process.env).then((code) => {
  process.exitCode = code
})
