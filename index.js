// @helios-project/worker-runtime: the native binding for this platform, behind a JavaScript
// entry that checks arguments as Node's own APIs do (see lib/). binding.js is the loader
// `napi build` generates.
'use strict'

const { makeRuntime } = require('./lib/worker-runtime.js')
const v = require('./lib/validate.js')

const PACKAGE = '@helios-project/worker-runtime'

function loadBinding() {
  try {
    return require('./binding.js')
  } catch (error) {
    // The generated loader reports every candidate it tried in a chain of causes. Only when
    // all of them were simply missing is this "not installed"; any other failure (a GLIBC too
    // old, an ABI mismatch) is the real cause and is thrown as it is.
    const tried = []
    for (let cause = error?.cause; cause; cause = cause.cause) tried.push(cause)
    const real = tried.find((e) => !String(e.message).startsWith('Cannot find module'))
    if (!String(error?.message).startsWith('Cannot find native binding') || real) throw real ?? error
    const packages = tried.map((e) => new RegExp(`'(${PACKAGE}-[^'/]+)'`).exec(e.message)?.[1]).filter(Boolean)
    const wanted = packages.find((name) => !name.includes('-wasm32-'))
    const platform = wanted ? wanted.slice(PACKAGE.length + 1) : `${process.platform}-${process.arch}`
    const advice = wanted
      ? `Install its binary package: npm install ${wanted} (it is an optional dependency of ${PACKAGE}; ` +
        "an install with --omit=optional, --no-optional or from another platform's lockfile skips it)."
      : 'There is no prebuilt binary for this platform; build from source with a Rust toolchain: npm run build.'
    const missing = new Error(`${PACKAGE} could not load its native binary for ${platform}. ${advice}`)
    missing.code = 'ERR_NATIVE_BINARY_NOT_FOUND'
    missing.cause = error
    throw missing
  }
}

const native = loadBinding()

/** Split a command string into a program and its arguments exactly as `run` does. */
function parseCommand(command) {
  return native.parseCommand(v.validateString(command, 'command'))
}

/** Join a program and its arguments into a command string that `parseCommand` splits back. */
function quoteCommand(program, args) {
  v.validateString(program, 'program')
  if (args != null && !Array.isArray(args)) throw v.invalidType('args', 'an array of strings', args)
  return native.quoteCommand(program, args == null ? undefined : [...args].map((word, i) => v.validateString(word, `args[${i}]`)))
}

// Assigned one by one, so that Node's CommonJS lexer sees the names and ESM can import them.
exports.WorkerRuntime = makeRuntime(native)
exports.parseCommand = parseCommand
exports.quoteCommand = quoteCommand
