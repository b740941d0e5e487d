// Installed like a user would: pack the main package and this platform's binary package,
// install both tarballs into a fresh project that cannot see the source tree (offline, so
// nothing comes from a registry), and use the package there.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import pkg from '../package.json'
import { cleanup, consumerProject, specOf, tempDir, writeSpec } from './helpers'

const root = resolve(__dirname, '..')
const platform = 'linux-x64-gnu'
// npm pack, npm install and tsc take their time on a loaded two-core machine.
const TOOLS_TIMEOUT = 600_000
const binary = join(root, `worker-runtime.${platform}.node`)
const sh = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 })
const npm = (args: string[], cwd: string) => sh('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], cwd)

let work: string
let mainTarball: string
let platformTarball: string

function project(name: string, tarballs: string[]): string {
  const dir = join(work, name)
  cpSync(join(work, 'empty'), dir, { recursive: true })
  npm(['install', '--offline', '--ignore-scripts', ...tarballs], dir)
  return dir
}

describe.skipIf(process.platform !== 'linux' || process.arch !== 'x64')('the published package', () => {
  beforeAll(() => {
    work = tempDir('hwr-pack-')
    // `npm run package`, given the binary under test (it builds a release binary otherwise).
    const dist = join(work, 'dist')
    sh(process.execPath, [join(root, 'scripts', 'package.mjs'), '--binary', binary, '--out', dist], root)
    mainTarball = join(dist, `helios-project-worker-runtime-${pkg.version}.tgz`)
    platformTarball = join(dist, `helios-project-worker-runtime-${platform}-${pkg.version}.tgz`)
    expect(readdirSync(dist).sort()).toEqual([mainTarball, platformTarball].map((t) => t.slice(dist.length + 1)).sort())
    mkdirSync(join(work, 'empty'))
    writeFileSync(join(work, 'empty', 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  }, TOOLS_TIMEOUT)
  afterAll(cleanup)

  it('ships only the loader, the JavaScript entry, the types, the CLI and the docs', () => {
    const files = sh('tar', ['tzf', mainTarball], work).trim().split('\n').sort()
    expect(files).toEqual(
      ['CHANGELOG.md', 'LICENSE', 'README.md', 'bin/helios-worker.js', 'binding.d.ts', 'binding.js', 'index.d.ts', 'index.js', 'lib/validate.js', 'lib/worker-runtime.js', 'package.json'].map((f) => `package/${f}`),
    )
    const binaryFiles = sh('tar', ['tzf', platformTarball], work).trim().split('\n').sort()
    expect(binaryFiles).toEqual(['package/README.md', 'package/package.json', `package/worker-runtime.${platform}.node`])
  })

  it('works from a fresh project: require, import, a job, npx helios-worker, types', () => {
    const dir = project('installed', [mainTarball, platformTarball])
    expect(existsSync(join(dir, 'node_modules', '@helios-project', 'worker-runtime', 'src'))).toBe(false)
    const spec = writeSpec(dir, specOf('echo installed'))
    writeFileSync(
      join(dir, 'cjs.cjs'),
      `const { WorkerRuntime } = require('${pkg.name}')
       new WorkerRuntime({ workspaceDir: 'ws' }).run(${JSON.stringify(spec)}, 0).then((r) => console.log(r.stdout.trim()))`,
    )
    expect(sh(process.execPath, ['cjs.cjs'], dir).trim()).toBe('installed')
    writeFileSync(join(dir, 'esm.mjs'), `import { parseCommand } from '${pkg.name}'\nconsole.log(parseCommand('a "b c"').args[0])`)
    expect(sh(process.execPath, ['esm.mjs'], dir).trim()).toBe('b c')
    expect(sh('npx', ['--offline', 'helios-worker', '--version'], dir).trim()).toBe(pkg.version)
    expect(sh('npx', ['--offline', 'helios-worker', spec, '0'], dir).trim()).toBe('installed')

    expect(consumerProject(dir, pkg.name).typecheck()).toBe('')
  }, TOOLS_TIMEOUT)

  it('says which platform and which package when the binary is missing', () => {
    const dir = project('no-binary', [mainTarball])
    writeFileSync(join(dir, 'load.cjs'), `try { require('${pkg.name}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`)
    const error = JSON.parse(sh(process.execPath, ['load.cjs'], dir))
    expect(error.code).toBe('ERR_NATIVE_BINARY_NOT_FOUND')
    expect(error.message).toContain(`for ${platform}`)
    expect(error.message).toContain(`npm install ${pkg.name}-${platform}`)
  })

  it('shows the real cause when a binary is there but cannot be loaded', () => {
    const dir = project('broken-binary', [mainTarball])
    // Not a shared object: dlopen refuses it, as it would refuse one built for a newer glibc.
    writeFileSync(join(dir, 'node_modules', pkg.name, `worker-runtime.${platform}.node`), 'not an ELF file')
    writeFileSync(join(dir, 'load.cjs'), `try { require('${pkg.name}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`)
    const error = JSON.parse(sh(process.execPath, ['load.cjs'], dir))
    expect(error.code).not.toBe('ERR_NATIVE_BINARY_NOT_FOUND')
    expect(error.message).toMatch(/invalid ELF header|file too short/)
  })
})
