// The JavaScript side of `WorkerRuntime`: checks arguments as Node does, reads every option
// once into plain values, and keeps what only JavaScript can do well here — the AbortSignal,
// the output callbacks' errors, the storage adapter's `this` and promise, and a worker
// thread's own `process.env`. Everything else happens in Rust.
'use strict'

const { accessSync, constants: fsConstants, statSync } = require('node:fs')
const { resolve } = require('node:path')
const { constants } = require('node:os')
const { MAX_STRING_LENGTH } = require('node:buffer').constants
const { getSystemErrorMap, inspect, types } = require('node:util')
const { AsyncResource } = require('node:async_hooks')
const { isMainThread } = require('node:worker_threads')
// Own references: fake timers replace the global `setImmediate` and `performance.now`.
const timers = require('node:timers')
const { performance } = require('node:perf_hooks')
const now = performance.now.bind(performance)
const promiseThen = Promise.prototype.then
const resolved = Promise.resolve()

const v = require('./validate.js')

/** The native side's default `maxBuffer`, which bounds a line's length with `lines`. */
const DEFAULT_MAX_BUFFER = 16 * 2 ** 20
/** The async resource that keeps a run's caller's context for what runs later on its behalf. */
const RUN_RESOURCE = 'HeliosWorkerRun'
/** Node's timers and child_process take at most this many milliseconds. */
const MAX_MS = 2 ** 31 - 1
const SIGNALS = constants.signals

function makeRuntime(native) {
  // The main thread's own `process.env` is this process's environment, which the native side
  // reads faster, under Node's lock on it, when it can (`environ.rs`).
  nativeEnvPairs = () => native.WorkerRuntime.environmentPairs()
  nativeEnv = isMainThread && native.WorkerRuntime.readsEnvironment?.() === true && writesEnvironment() ? process.env : undefined
  class WorkerRuntime {
    #native
    #defaults
    #hasStorage
    #runs = new Map()
    #lastId = 0

    constructor(config) {
      v.validateObject(config, 'config')
      const workspaceDir = v.validatePlainString(config.workspaceDir, 'config.workspaceDir', { empty: false })
      const perJobWorkspace = config.perJobWorkspace
      if (perJobWorkspace != null) v.validateBoolean(perJobWorkspace, 'config.perJobWorkspace')
      const storage = config.storage
      if (storage != null) {
        v.validateObject(storage, 'config.storage')
        v.validateFunction(storage.downloadAssetBundle, 'config.storage.downloadAssetBundle')
      }
      const fetch = {
        ...(config.fetch == null ? undefined : fetchOptions(v.validateObject(config.fetch, 'config.fetch'))),
        ...environmentNetwork(),
      }
      this.#defaults = runControls(config, 'config')
      this.#hasStorage = storage != null
      // The native side holds this bridge for as long as it lives: it must not hold `this`,
      // or the runtime could never be collected.
      const runs = this.#runs
      this.#native = new native.WorkerRuntime({
        workspaceDir: resolve(workspaceDir),
        perJobWorkspace: perJobWorkspace ?? false,
        storage: this.#hasStorage
          ? {
              downloadAssetBundle: (jobIdJson, remoteUrl, targetDir, runId) => {
                const run = runs.get(runId)
                // A call that arrives after its run has ended starts nothing.
                if (!run) return Promise.reject(new Error('The run this download belongs to has ended'))
                const jobId = jobIdJson == null ? undefined : JSON.parse(jobIdJson)
                // In the async context of the run's caller (AsyncLocalStorage), as an `await`.
                return run.scope.runInAsyncScope(callStorage, null, storage, run, [jobId, remoteUrl, targetDir])
              },
            }
          : undefined,
        fetch,
      })
    }

    /** The absolute path of the workspace every command runs in. */
    get workspaceDir() {
      return this.#native.workspaceDir
    }

    run(jobPath, chunkId, options) {
      try {
        validateJobPath(jobPath)
        if (typeof chunkId !== 'number') throw v.invalidType('chunkId', 'of type number', chunkId)
        if (!Number.isSafeInteger(chunkId)) throw v.outOfRange('chunkId', 'a safe integer', chunkId)
        const given = options == null ? undefined : runControls(v.validateObject(options, 'options'), 'options')
        return this.#start(jobPath, chunkId, given, options)
      } catch (error) {
        // An async API reports every failure through its promise, whatever threw.
        return Promise.reject(error)
      }
    }

    /** The spec's `mergeCommand`, run as a chunk's command is run. */
    merge(jobPath, options) {
      try {
        validateJobPath(jobPath)
        const given = options == null ? undefined : runControls(v.validateObject(options, 'options'), 'options')
        return this.#start(jobPath, undefined, given, options)
      } catch (error) {
        return Promise.reject(error)
      }
    }

    /** Chunk `chunkId`, or the merge when it is undefined; `handle` is the caller's options
     * object, under which `signalRun` finds the run. */
    #start(jobPath, chunkId, given, handle) {
      const defaults = this.#defaults
      const signal = given?.signal
      if (signal?.aborted) return Promise.reject(abortError(readReason(signal)))
      const run = { signal, aborted: false, reason: undefined, controller: undefined, adapterError: undefined, scope: undefined }
      if (this.#hasStorage) run.scope = new AsyncResource(RUN_RESOURCE)
      const lines = given?.lines ?? defaults.lines
      // A line longer than the output kept (at least 1 MiB) reaches the callbacks in pieces.
      const maxLine = Math.max(given?.native.maxBuffer ?? defaults.native.maxBuffer ?? DEFAULT_MAX_BUFFER, 2 ** 20)
      const runId = (this.#lastId = (this.#lastId % 0x7fffffff) + 1)
      const options = {
        ...defaults.native,
        ...given?.native,
        // The runtime's defaults are laid over here, once: the native side sees a run's options only.
        env: defaults.env && given?.env ? Object.assign(Object.create(null), defaults.env, given.env) : (given?.env ?? defaults.env),
        inheritedEnv: undefined,
        cwd: process.cwd(),
        onStdout: guard(given?.onStdout ?? defaults.onStdout, 'onStdout', lines && maxLine),
        onStderr: guard(given?.onStderr ?? defaults.onStderr, 'onStderr', lines && maxLine),
        signal: undefined,
        runId,
      }
      const onAbort = () => {
        run.aborted = true
        run.reason = readReason(signal)
        run.controller?.abort(run.reason)
        this.#native.cancel(runId)
      }
      if (signal) {
        listen(signal, onAbort)
        // An abort before the listener was there (user code can run in between) counts too.
        if (!run.aborted && signal.aborted) onAbort()
      }
      if (signal || this.#hasStorage) this.#runs.set(runId, run)
      const settle = (error) => {
        if (signal) unlisten(signal, onAbort)
        const listed = handle == null ? undefined : runSignals.get(handle)
        if (listed?.runId === runId && listed.native === this.#native) runSignals.delete(handle)
        this.#runs.delete(runId)
        // An adapter still at work (the run timed out, failed or was aborted) may stop now.
        run.controller?.abort(run.reason ?? error ?? new Error('The run this download belongs to has ended'))
      }
      let running
      try {
        // A signal may have fired while its listener was being added.
        if (run.aborted) throw abortError(run.reason)
        const native = this.#native
        running = startSoon(run, (heldMs, inheritedEnv) => {
          options.heldMs = heldMs
          options.inheritedEnv = inheritedEnv
          return chunkId === undefined ? native.merge(jobPath, options) : native.run(jobPath, chunkId, options)
        })
        if (handle != null) {
          runSignals.set(handle, { native, runId, send: (number, graceMs) => native.signal(runId, number, graceMs) })
        }
      } catch (error) {
        settle(error)
        throw error
      }
      return running.then(
        (result) => {
          settle()
          return withOutput(result)
        },
        (error) => {
          const shown = fromNative(error, run)
          settle(shown)
          throw shown
        },
      )
    }
  }
  return WorkerRuntime
}

/** Runs held back: started in a synchronous stretch of JavaScript after its first run, or
 * while earlier ones still wait. They are handed to the native side once the stretch has
 * returned, in order, a few per turn of the event loop, so that neither their commands nor
 * handing them over hold up the stretch or the loop (100 runs started at once). */
const waiting = []
const HELD_PER_TURN = 16
/** `process.env` when it is the one the native side reads itself (see `makeRuntime`), and its
 * reader for a run held back. */
let nativeEnv
let nativeEnvPairs
let inStretch = false
let handing = false

/** `start(heldMs, inheritedEnv)` now when it is the stretch's first run and none waits, else
 * later; either way with everything from JavaScript (environment, cwd, options) as at the call. */
function startSoon(run, start) {
  const first = !inStretch && waiting.length === 0
  if (!inStretch) {
    // A promise job, not `queueMicrotask` or a timer: those are what fake timers replace. Set
    // only once it is queued: a stretch that never ends would hold every later run forever.
    promiseThen.call(resolved, endStretch)
    inStretch = true
  }
  const readNatively = nativeEnv !== undefined && process.env === nativeEnv
  if (first) return start(undefined, readNatively ? undefined : inheritedEnvironment())
  const since = now()
  const env = readNatively ? nativeEnvPairs() : inheritedEnvironment()
  // Called later, in the async context of this call (AsyncLocalStorage sees the caller's);
  // not through `AsyncResource.bind`, which costs 12 µs, ten times this, per held run.
  const scope = run.scope ?? new AsyncResource(RUN_RESOURCE)
  const later = (heldMs) => scope.runInAsyncScope(start, null, heldMs, env)
  return new Promise((resolve, reject) => waiting.push({ run, since, later, resolve, reject }))
}

function endStretch() {
  inStretch = false
  if (waiting.length > 0 && !handing) {
    handing = true
    timers.setImmediate(startWaiting)
  }
}

function startWaiting() {
  for (const { run, since, later, resolve, reject } of waiting.splice(0, HELD_PER_TURN)) {
    try {
      // Aborted meanwhile: its command is not started at all.
      if (run.aborted) throw abortError(run.reason)
      // Its timeout counts from the call.
      later(now() - since).then(resolve, reject)
    } catch (error) {
      reject(error)
    }
  }
  handing = waiting.length > 0
  if (handing) timers.setImmediate(startWaiting)
}

function validateJobPath(jobPath) {
  v.validateString(jobPath, 'jobPath')
  if (jobPath === '') throw v.invalidType('jobPath', 'a non-empty string', jobPath)
  v.validatePlainString(jobPath, 'jobPath')
}

/** The run last started with an options object, by that object (for the CLI). */
const runSignals = new WeakMap()

/** Send `signal` (a name or a number) to the process group of the command of the run last
 * started with `options`, as `kill` would, giving what is left of the group `graceMs` to end
 * once the command's own process has ended (the run's output drain waits that long); `false`
 * when that command is not running (it has not started, or it has ended). */
function signalRun(options, signal, graceMs = 0) {
  const number = signalNumber(signal, 'signal')
  return runSignals.get(options)?.send(number, graceMs) ?? false
}

/** The local `outputFile` each result's chunk declared, found or not (for the CLI's check). */
const declaredOutputs = new WeakMap()

/** `outputPath` stays only when the file exists: the native side names it whenever declared. */
function withOutput(result) {
  if (result.outputPath !== undefined) {
    declaredOutputs.set(result, result.outputPath)
    if (result.outputBytes === undefined) delete result.outputPath
  }
  return result
}

/** The absolute path of the local `outputFile` the chunk of `result` declared, whether or not
 * it exists; `undefined` when it declared none (or a URL such as `s3://…`). */
function declaredOutputPath(result) {
  return declaredOutputs.get(result)
}

/** `storage.downloadAssetBundle` as `await` would call it: as a method, looked up at the call
 * (a method replaced or spied on after the runtime was made is the one called, as in the
 * TypeScript runtime), with the run's signal (already aborted if the run was), a throw or a
 * plain value turned into a promise, a non-Error wrapped as the TypeScript runtime wraps it. */
function callStorage(storage, run, args) {
  run.controller ??= new AbortController()
  if (run.aborted) run.controller.abort(run.reason)
  const options = { signal: run.controller.signal }
  const call = () => {
    const download = storage.downloadAssetBundle
    if (typeof download !== 'function') {
      throw v.invalidType('config.storage.downloadAssetBundle', 'of type function', download)
    }
    return download.call(storage, ...args, options)
  }
  // Held by the run for as long as it lasts: a promise nothing refers to can be collected
  // before it settles, and the native side would see the call as failed, not pending.
  run.pending = new Promise((done) => done(call())).then(
    () => undefined,
    (error) => {
      run.adapterError = isError(error) ? error : Object.assign(new Error(asString(error)), { cause: error })
      throw run.adapterError
    },
  )
  return run.pending
}

function isError(value) {
  try {
    return value instanceof Error || types.isNativeError(value)
  } catch {
    return false
  }
}

/** The run controls in `source` (a config or a run's options), each property read once. */
function runControls(source, prefix) {
  const name = (key) => `${prefix}.${key}`
  const timeout = source.timeout
  const killSignal = source.killSignal
  const killGracePeriod = source.killGracePeriod
  const maxBuffer = source.maxBuffer
  const env = source.env
  const onStdout = source.onStdout
  const onStderr = source.onStderr
  const signal = prefix === 'options' ? source.signal : undefined
  const lines = source.lines
  const native = {}
  if (timeout != null) native.timeout = v.validateNumber(timeout, name('timeout'), 0, MAX_MS, { infinity: true }) === Infinity ? 0 : timeout
  if (killSignal != null) native.killSignal = signalNumber(killSignal, name('killSignal'))
  if (killGracePeriod != null) native.killGracePeriod = v.validateNumber(killGracePeriod, name('killGracePeriod'), 0, MAX_MS)
  if (maxBuffer != null) {
    v.validateNumber(maxBuffer, name('maxBuffer'), 0, MAX_STRING_LENGTH, { infinity: true })
    // The output becomes a JavaScript string, which cannot be longer than this.
    native.maxBuffer = Math.min(maxBuffer, MAX_STRING_LENGTH)
  }
  if (onStdout != null) v.validateFunction(onStdout, name('onStdout'))
  if (onStderr != null) v.validateFunction(onStderr, name('onStderr'))
  if (signal != null && (typeof signal !== 'object' || !('aborted' in signal) || typeof signal.addEventListener !== 'function')) {
    throw v.invalidType(name('signal'), 'an instance of AbortSignal', signal)
  }
  if (lines != null) v.validateBoolean(lines, name('lines'))
  return {
    native,
    lines: lines ?? undefined,
    env: env == null ? undefined : environmentOverlay(v.validateObject(env, name('env')), name('env')),
    onStdout: onStdout ?? undefined,
    onStderr: onStderr ?? undefined,
    signal: signal ?? undefined,
  }
}

function signalNumber(value, name) {
  if (typeof value === 'string') {
    if (Object.hasOwn(SIGNALS, value)) return SIGNALS[value]
  } else if (typeof value === 'number') {
    if (Object.values(SIGNALS).includes(value)) return value
  } else {
    throw v.invalidType(name, 'of type string or number', value)
  }
  throw v.invalidValue(name, "is not a known signal (e.g. 'SIGTERM')", value)
}

/** `{ KEY: value }` as a plain overlay: a string, number or boolean sets (as a string), `null`
 * removes, `undefined` is skipped (as child_process skips it). */
function environmentOverlay(env, name) {
  // No prototype: a variable named `__proto__` is a key like any other, as for Node's spawn.
  const overlay = Object.create(null)
  for (const key of Object.keys(env)) {
    const value = env[key]
    if (key === '' || key.includes('=') || key.includes('\0')) {
      throw v.invalidValue(`${name}.${key}`, 'is not a valid environment variable name', key)
    }
    if (value === undefined) continue
    if (value !== null && !['string', 'number', 'boolean'].includes(typeof value)) {
      throw v.invalidType(`${name}.${key}`, 'of type string', value)
    }
    const text = value === null ? null : String(value)
    if (text?.includes('\0')) throw v.invalidValue(`${name}.${key}`, 'must not contain NUL bytes', value)
    overlay[key] = text
  }
  return overlay
}

/** Whether `process.env` is Node's own object for this process's environment, not one put in
 * its place before this package was loaded (as a test runner's sandbox does): not a Proxy,
 * which could show other variables than it writes, and a variable set through it is seen
 * natively. */
function writesEnvironment() {
  const env = process.env
  const name = `HELIOS_WORKER_RUNTIME_PROBE_${process.pid}`
  if (types.isProxy(env)) return false
  try {
    env[name] = '1'
    return nativeEnvPairs().split('\0').includes(`${name}=1`)
  } catch {
    return false
  } finally {
    try {
      delete env[name]
    } catch {
      // Not the process's environment either way.
    }
  }
}

/** The environment a command inherits: `process.env` as it is when `run` is called, read here,
 * through Node's own accessors, when the native side cannot read it itself: in a worker thread
 * (its own copy), for an object put in place of `process.env` (what Node's `spawn` would pass
 * on too), or without Node's lock (`environ.rs`), which a worker started with `SHARE_ENV`
 * takes to write it: an unlocked read could crash. */
function inheritedEnvironment() {
  // One string of `KEY=value\0` pairs: a single value to hand over instead of an object whose
  // every property the native side would read one call at a time.
  const env = process.env
  let pairs = ''
  // As Node's `spawn` reads it: enumerable keys, inherited ones too; `undefined` skipped.
  for (const key in env) {
    const value = env[key]
    if (value === undefined || key.includes('=') || key.includes('\0')) continue
    const text = String(value)
    if (!text.includes('\0')) pairs += `${key}=${text}\0`
  }
  return pairs
}

function fetchOptions(fetch) {
  const name = (key) => `config.fetch.${key}`
  const out = {}
  const retries = fetch.retries
  if (retries != null) out.retries = v.validateNumber(retries, name('retries'), 0, 100, { integer: true })
  for (const key of ['retryBaseMs', 'retryMaxMs', 'connectTimeoutMs', 'timeoutMs', 'idleTimeoutMs']) {
    const value = fetch[key]
    if (value != null) out[key] = v.validateNumber(value, name(key), 0, MAX_MS)
  }
  const maxSpecBytes = fetch.maxSpecBytes
  if (maxSpecBytes != null) out.maxSpecBytes = v.validateNumber(maxSpecBytes, name('maxSpecBytes'), 0, Number.MAX_SAFE_INTEGER, { infinity: true })
  const headers = fetch.headers
  if (headers != null) {
    v.validateObject(headers, name('headers'))
    out.headers = {}
    for (const key of Object.keys(headers)) out.headers[key] = v.validateString(headers[key], `${name('headers')}.${key}`)
  }
  const cas = fetch.caCertificates
  if (cas != null) {
    const list = Array.isArray(cas) ? [...cas] : [cas]
    out.caCertificates = list.map((pem, i) => v.validateString(pem, `${name('caCertificates')}[${i}]`))
  }
  return out
}

/** What Node's own networking would take from the environment, read here on the JavaScript
 * thread: the proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, or their lower-case forms)
 * and the certificates of `NODE_EXTRA_CA_CERTS`, which Node reads once per process. */
function environmentNetwork() {
  const env = process.env
  // The lower-case form first, as curl and Node's own proxy support read them.
  const pick = (name) => env[name.toLowerCase()] || env[name] || undefined
  return {
    httpProxy: pick('HTTP_PROXY'),
    httpsProxy: pick('HTTPS_PROXY'),
    noProxy: pick('NO_PROXY'),
    // Resolved now: the native side reads it later, maybe after a process.chdir().
    extraCaFile: env.NODE_EXTRA_CA_CERTS ? extraCaFile(resolve(env.NODE_EXTRA_CA_CERTS)) : undefined,
  }
}

/** `NODE_EXTRA_CA_CERTS` when it can be read (checked once per path, as Node reads it once):
 * the native side reads and parses it once per process, not every runtime. */
let extraCas = { path: undefined, readable: false }
const MAX_EXTRA_CA_BYTES = 16 * 1024 * 1024
function extraCaFile(path) {
  if (!path) return undefined
  if (extraCas.path !== path) {
    let readable = false
    try {
      // Looked at, not read: a FIFO or a device (`/dev/zero`) named there would hang or fill
      // the memory. The native side reads the file.
      const stats = statSync(path)
      if (!stats.isFile()) throw new Error('not a regular file')
      if (stats.size > MAX_EXTRA_CA_BYTES) throw new Error('larger than 16 MiB')
      accessSync(path, fsConstants.R_OK)
      readable = true
    } catch (error) {
      process.emitWarning(`Ignoring extra certs from \`${path}\`, load failed: ${error.message}`, 'HeliosWorkerRuntimeWarning')
    }
    extraCas = { path, readable }
  }
  return extraCas.readable ? path : undefined
}

/** A callback that is not called again once it has thrown, whatever it threw; the throw
 * becomes a process warning. An empty piece is the runtime's barrier, the stream's end: not
 * passed on, but in line mode it delivers the last line when it had no newline. `lines` is
 * falsy, or in line mode the longest line in characters delivered whole. */
function guard(callback, name, lines) {
  if (callback === undefined) return undefined
  let failed = false
  // The pieces of the line in progress, joined once its newline arrives: a long line costs
  // its length, not its length times its pieces. One longer than `lines` goes out as it is:
  // output without newlines (a `\r` progress bar, raw video) cannot fill memory.
  let partial = []
  let partialLength = 0
  const line = (text) => callback(text.endsWith('\r') ? text.slice(0, -1) : text)
  const deliver = (text) => {
    if (!lines) return callback(text)
    let start = 0
    for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
      partial.push(text.slice(start, end))
      const whole = partial.join('')
      partial = []
      partialLength = 0
      start = end + 1
      line(whole)
    }
    if (start < text.length) {
      partial.push(text.slice(start))
      partialLength += text.length - start
    }
    if (partialLength > lines) {
      const piece = partial.join('')
      partial = []
      partialLength = 0
      callback(piece)
    }
  }
  return (text) => {
    if (failed) return
    try {
      if (text !== '') deliver(text)
      else if (partial.length > 0) {
        const last = partial.join('')
        partial = []
        partialLength = 0
        line(last)
      }
    } catch (error) {
      failed = true
      process.emitWarning(
        `${name} threw and will not be called again for this run (its output is still in the result): ${describe(error)}`,
        'HeliosWorkerRuntimeWarning',
      )
    }
  }
}

/** `String(value)`, as the TypeScript runtime words a non-Error; never throws. */
function asString(value) {
  try {
    return String(value)
  } catch {
    return describe(value)
  }
}

/** Any thrown value as text, as `util.inspect` shows it; never throws. */
function describe(value) {
  try {
    return value instanceof Error ? String(value.message) : typeof value === 'string' ? value : inspect(value)
  } catch {
    return 'a value that cannot be shown'
  }
}

function readReason(signal) {
  try {
    return signal.reason
  } catch (error) {
    return error
  }
}

function abortError(reason) {
  const error = v.codedError(Error, 'ABORT_ERR', 'The operation was aborted')
  error.name = 'AbortError'
  if (reason !== undefined) error.cause = reason
  return error
}

/** The native error as the caller should see it: an abort carries the signal's reason; a
 * system error has Node's (libuv's) wording. */
function fromNative(error, run) {
  // The adapter's own error comes back exactly as it was, whatever it looks like.
  if (run.adapterError !== undefined && error === run.adapterError) return error
  if (error?.code === 'ABORT_ERR' && run.aborted) return abortError(run.reason)
  if (typeof error?.errno === 'number' && typeof error.syscall === 'string' && !error.syscall.startsWith('spawn')) {
    const text = getSystemErrorMap().get(error.errno)?.[1]
    const rest = error.message.indexOf(', ')
    if (text && rest > 0) error.message = `${error.code}: ${text}${error.message.slice(rest)}`
  }
  return error
}

/** One 'abort' listener per signal, however many runs share it: a batch of chunks under one
 * signal must not pile up listeners (Node warns past 10). */
const listeners = new WeakMap()

function listen(signal, onAbort) {
  let runs = listeners.get(signal)
  if (runs) {
    runs.add(onAbort)
    return
  }
  runs = new Set([onAbort])
  runs.dispatch = () => {
    for (const run of runs) run()
  }
  listeners.set(signal, runs)
  try {
    signal.addEventListener('abort', runs.dispatch, { once: true })
  } catch (error) {
    listeners.delete(signal)
    throw error
  }
}

function unlisten(signal, onAbort) {
  const runs = listeners.get(signal)
  if (!runs) return
  runs.delete(onAbort)
  if (runs.size > 0) return
  listeners.delete(signal)
  try {
    signal.removeEventListener('abort', runs.dispatch)
  } catch {
    // A signal whose removeEventListener throws keeps a listener that finds no run.
  }
}

module.exports = { makeRuntime, declaredOutputPath, signalRun }
