// `npm install` on the oldest Node the package claims prints no engine warning: every package
// in the lockfile accepts this Node (development dependencies pinned or overridden to do so).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

import pkg from '../package.json'

const root = resolve(__dirname, '..')
// semver is already installed, as a dependency of @napi-rs/cli.
const semver = createRequire(join(root, 'node_modules', '@napi-rs', 'cli', 'package.json'))('semver') as {
  satisfies(version: string, range: string): boolean
  minVersion(range: string): { version: string } | null
}

describe('engines', () => {
  it('every locked package accepts the Node running the tests and the oldest one the package claims', () => {
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { engines?: { node?: string } }>
    }
    const oldest = semver.minVersion(pkg.engines.node)!.version
    const refusing = Object.entries(lock.packages)
      .filter(([, entry]) => typeof entry.engines?.node === 'string')
      .filter(([, entry]) => !semver.satisfies(process.version, entry.engines!.node!) || !semver.satisfies(`${oldest.split('.')[0]}.20.0`, entry.engines!.node!))
      .map(([name, entry]) => `${name} wants node ${entry.engines!.node}`)
    expect(refusing).toEqual([])
  })
})
