// @helios-project/worker-runtime: loads the native binding for this platform. binding.js is
// the loader `napi build` generates; this file only turns its failure into an error that says
// which platform this is and which package to install.
'use strict'

const PACKAGE = '@helios-project/worker-runtime'
const SUPPORTED = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']

function isMusl() {
  try {
    const report = process.report && process.report.getReport()
    return Boolean(report && report.header && !report.header.glibcVersionRuntime)
  } catch {
    return false
  }
}

function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') return `${platform}-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `${platform}-${arch}-msvc`
  return `${platform}-${arch}`
}

try {
  module.exports = require('./binding.js')
} catch (cause) {
  const platform = platformName()
  const advice = SUPPORTED.includes(platform)
    ? `Install its binary package: npm install ${PACKAGE}-${platform} (it is an optional dependency of ${PACKAGE}; ` +
      'an install with --omit=optional, --no-optional or from another platform\'s lockfile skips it).'
    : `This platform is not supported; prebuilt binaries exist for ${SUPPORTED.join(', ')}. ` +
      'Build from source with a Rust toolchain: npm run build.'
  const error = new Error(`${PACKAGE} could not load its native binary for ${platform}. ${advice}`)
  error.code = 'ERR_NATIVE_BINARY_NOT_FOUND'
  error.cause = cause
  throw error
}
