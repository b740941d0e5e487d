// CHANGELOG.md follows Keep a Changelog, and `npm version` keeps it in step with package.json.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import pkg from '../package.json'
import { cleanup, tempDir } from './helpers'

afterAll(cleanup)

const root = resolve(__dirname, '..')
const changelog = readFileSync(join(root, 'CHANGELOG.md'), 'utf8')

describe('the changelog', () => {
  it('has an Unreleased section and one for the current version, with their links', () => {
    expect(changelog).toMatch(/^## \[Unreleased\]$/m)
    expect(changelog).toMatch(new RegExp(`^## \\[${pkg.version.replaceAll('.', '\\.')}\\] - \\d{4}-\\d{2}-\\d{2}$`, 'm'))
    expect(changelog).toMatch(/^\[Unreleased\]: https:\/\/.+$/m)
    expect(pkg.scripts.version).toContain('scripts/changelog-version.mjs')
  })

  it('npm version moves Unreleased under the new version and updates the links', () => {
    const file = join(tempDir(), 'CHANGELOG.md')
    writeFileSync(file, changelog)
    execFileSync(process.execPath, [join(root, 'scripts', 'changelog-version.mjs'), file, '0.2.0'], { encoding: 'utf8' })
    const after = readFileSync(file, 'utf8')
    const unreleased = after.indexOf('## [Unreleased]')
    const released = after.indexOf('## [0.2.0] - ')
    expect(unreleased).toBeGreaterThanOrEqual(0)
    expect(released).toBeGreaterThan(unreleased)
    // What was unreleased is now under 0.2.0, before the section of the version before it.
    expect(after.indexOf('### Added', released)).toBeLessThan(after.indexOf(`## [${pkg.version}]`))
    expect(after).toContain(`[0.2.0]: https://github.com/helios-project/worker-runtime/compare/v${pkg.version}...v0.2.0`)
    expect(after).toContain('[Unreleased]: https://github.com/helios-project/worker-runtime/compare/v0.2.0...HEAD')
    // A version that already has a section is refused.
    expect(() => execFileSync(process.execPath, [join(root, 'scripts', 'changelog-version.mjs'), file, '0.2.0'], { stdio: 'pipe' })).toThrow()
  })
})
