// npm run package: the release binary, built in a folder of its own (never the .node that the
// tests use), and two tarballs in dist/: the package itself and this platform's binary
// package, with the same version. Install both into another project:
//
//   npm install /path/to/worker-runtime/dist/*.tgz
//
//   node scripts/package.mjs --binary some.node   package an existing binary instead (tests)
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const { values } = parseArgs({ options: { binary: { type: 'string' }, out: { type: 'string', default: join(root, 'dist') } } })
const out = resolve(values.out)
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

/** This machine's platform, named as the packages under npm/ are. */
function platform() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'}`
  return platform === 'win32' ? `win32-${arch}-msvc` : `${platform}-${arch}`
}
const target = platform()
const platformDir = join(root, 'npm', target)
if (!existsSync(platformDir)) {
  console.error(`No binary package for ${target} under npm/: this platform is not one the package is built for.`)
  process.exit(1)
}
const platformPkg = JSON.parse(readFileSync(join(platformDir, 'package.json'), 'utf8'))
if (platformPkg.version !== pkg.version) {
  console.error(`npm/${target}/package.json is at ${platformPkg.version}, the package at ${pkg.version}: run npm version to bring them in step.`)
  process.exit(1)
}

const stage = join(out, '.stage')
rmSync(stage, { recursive: true, force: true })
mkdirSync(stage, { recursive: true })
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', shell: process.platform === 'win32' })
const binaryName = `${pkg.napi.binaryName}.${target}.node`
if (values.binary) {
  cpSync(resolve(values.binary), join(stage, binaryName))
} else {
  // Only the binary lands in the stage: the committed loader and declarations stay as they are.
  execFileSync(process.execPath, [join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js'), 'build', '--platform', '--release', '--output-dir', stage, '--no-js', '--dts', 'unused.d.ts'], { cwd: root, stdio: 'inherit' })
}
const binaryDir = join(stage, target)
cpSync(platformDir, binaryDir, { recursive: true })
cpSync(join(stage, binaryName), join(binaryDir, binaryName))
const pack = (cwd) => run('npm', ['pack', '--pack-destination', out, '--loglevel=error'], cwd).trim().split('\n').at(-1)
const tarballs = [pack(root), pack(binaryDir)]
rmSync(stage, { recursive: true, force: true })
console.log(`dist/: ${tarballs.join(', ')}`)
console.log(`Install both into a project: npm install ${join(out, '*.tgz')}`)
