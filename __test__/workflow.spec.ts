// The release workflow cannot run here; it is checked for syntax and for agreeing with the
// package it builds.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

import pkg from '../package.json'

const workflow = parse(readFileSync(join(__dirname, '..', '.github', 'workflows', 'release.yml'), 'utf8'))

type Step = { uses?: string; run?: string; if?: string; with?: Record<string, unknown> }
type Job = { 'runs-on': string; steps: Step[]; needs?: string | string[]; if?: string; permissions?: Record<string, string>; strategy?: { matrix: { include: Array<Record<string, string>> } } }
const jobs = workflow.jobs as Record<string, Job>

describe('the release workflow', () => {
  it('parses as YAML, with lint, build, test and publish jobs whose steps all do something', () => {
    expect(Object.keys(jobs)).toEqual(['lint', 'build', 'test', 'publish'])
    for (const [name, job] of Object.entries(jobs)) {
      expect(job['runs-on'], name).toBeTruthy()
      for (const step of job.steps) expect(Boolean(step.uses) !== Boolean(step.run), `${name}: ${JSON.stringify(step)}`).toBe(true)
    }
  })

  it('builds every target the package declares', () => {
    const built = jobs.build.strategy!.matrix.include.map((entry) => entry.target).sort()
    expect(built).toEqual([...pkg.napi.targets].sort())
  })

  it('lints what CI lints', () => {
    const runs = jobs.lint.steps.map((s) => s.run ?? '')
    expect(runs).toContain('cargo fmt --all -- --check')
    expect(runs).toContain('cargo clippy --all-targets -- -D warnings')
  })

  it('tests on Linux, macOS and Windows', () => {
    const hosts = jobs.test.strategy!.matrix.include.map((entry) => entry.host)
    expect(hosts.some((h) => h.startsWith('ubuntu'))).toBe(true)
    expect(hosts.some((h) => h.startsWith('macos'))).toBe(true)
    expect(hosts.some((h) => h.startsWith('windows'))).toBe(true)
  })

  it('publishes only on a version tag, after everything passed, with provenance', () => {
    const publish = jobs.publish
    expect(workflow.on.push.tags).toEqual(['v*'])
    expect(publish.if).toBe("startsWith(github.ref, 'refs/tags/v')")
    expect(publish.needs).toEqual(['lint', 'build', 'test'])
    expect(publish.permissions).toMatchObject({ 'id-token': 'write' })
    expect(publish.steps.map((s) => s.run ?? '').join('\n')).toMatch(/npm publish --provenance/)
    expect(pkg.scripts.prepublishOnly).toBe('napi prepublish -t npm')
  })
})
