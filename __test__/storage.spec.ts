import { AsyncLocalStorage } from 'node:async_hooks'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime, type ArtifactStorage } from '../index.js'
import { cleanup, eventually, existsSync, sleep, tempDir, writeSpec } from './helpers'

afterAll(cleanup)

/** Shaped like the infrastructure package's adapters: a class whose method reads `this`. */
class DelayedStorage implements ArtifactStorage {
  calls: Array<[string, string, string]> = []
  constructor(
    private readonly delayMs: number,
    private readonly failWith?: Error,
  ) {}
  async downloadAssetBundle(jobId: string, remoteUrl: string, targetDir: string): Promise<void> {
    this.calls.push([jobId, remoteUrl, targetDir])
    await sleep(this.delayMs)
    if (this.failWith) throw this.failWith
    writeFileSync(join(targetDir, 'bundle.txt'), `assets of ${jobId}`)
  }
  // The real interface has more methods; the runtime never calls them.
  async uploadJobSpec(): Promise<string> {
    throw new Error('not used')
  }
}

function jobWithAssets(assetsUrl: string | undefined, command: string) {
  const dir = tempDir()
  const workspace = join(dir, 'ws')
  const path = writeSpec(dir, { id: 'job-42', assetsUrl, chunks: [{ id: 0, command }] })
  return { dir, workspace, path }
}

describe('the storage bridge', () => {
  it('calls downloadAssetBundle as a method and awaits it before the command', async () => {
    const { workspace, path } = jobWithAssets('s3://bucket/assets.zip', 'cat bundle.txt')
    const storage = new DelayedStorage(100)
    const runtime = new WorkerRuntime({ workspaceDir: workspace, storage })
    const result = await runtime.run(path, 0)
    expect(storage.calls).toEqual([['job-42', 's3://bucket/assets.zip', workspace]])
    expect(result).toMatchObject({ exitCode: 0, stdout: 'assets of job-42' })
  })

  it("runs the adapter in its run's caller's AsyncLocalStorage context, as an await would", async () => {
    const { workspace, path } = jobWithAssets('s3://bucket/assets.zip', 'true')
    const als = new AsyncLocalStorage<string>()
    const seen: (string | undefined)[] = []
    const storage = { downloadAssetBundle: async () => void seen.push(als.getStore()) }
    // Created outside any request, reused by each: the server pattern that keeps one runtime.
    const runtime = new WorkerRuntime({ workspaceDir: workspace, storage })
    await als.run('req-1', () => runtime.run(path, 0))
    await Promise.all(['req-2', 'req-3'].map((id) => als.run(id, () => runtime.run(path, 0))))
    expect(seen.sort()).toEqual(['req-1', 'req-2', 'req-3'])
  })

  it('passes the adapter rejection through unchanged and does not run the command', async () => {
    const { workspace, path } = jobWithAssets('s3://bucket/assets.zip', 'touch ran')
    const failure = Object.assign(new Error('AccessDenied: bucket says no'), { code: 'AccessDenied' })
    const runtime = new WorkerRuntime({ workspaceDir: workspace, storage: new DelayedStorage(10, failure) })
    const err = await runtime.run(path, 0).catch((e) => e)
    expect(err).toBe(failure)
    expect(err.message).toBe('AccessDenied: bucket says no')
    expect(existsSync(join(workspace, 'ran'))).toBe(false)
  })

  it('passes a synchronous throw through as the rejection', async () => {
    const { workspace, path } = jobWithAssets('https://cdn.test/a.zip', 'touch ran')
    const failure = new TypeError('adapter misconfigured')
    const storage = {
      downloadAssetBundle(): Promise<void> {
        throw failure
      },
    }
    const err = await new WorkerRuntime({ workspaceDir: workspace, storage }).run(path, 0).catch((e) => e)
    expect(err).toBe(failure)
    expect(existsSync(join(workspace, 'ran'))).toBe(false)
  })

  it('awaits an adapter that returns a plain value as await would', async () => {
    const { workspace, path } = jobWithAssets('https://cdn.test/a.zip', 'true')
    let called = 0
    const storage = {
      downloadAssetBundle: () => {
        called++
        return undefined as unknown as Promise<void>
      },
    }
    await expect(new WorkerRuntime({ workspaceDir: workspace, storage }).run(path, 0)).resolves.toMatchObject({
      exitCode: 0,
    })
    expect(called).toBe(1)
  })

  it('stops waiting for a storage call that never settles when the run is aborted', async () => {
    const { workspace, path } = jobWithAssets('s3://bucket/assets.zip', 'touch ran')
    let called = false
    const storage = {
      downloadAssetBundle: () => {
        called = true
        return new Promise<void>(() => {})
      },
    }
    const controller = new AbortController()
    const running = new WorkerRuntime({ workspaceDir: workspace, storage }).run(path, 0, { signal: controller.signal })
    expect(await eventually(() => called), 'the storage call started').toBe(true)
    controller.abort()
    await expect(running).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' })
    expect(existsSync(join(workspace, 'ran'))).toBe(false)
  })

  it('refuses a job with assets when no storage is configured, with the exact message', async () => {
    const { workspace, path } = jobWithAssets('s3://bucket/assets.zip', 'touch ran')
    const err = await new WorkerRuntime({ workspaceDir: workspace }).run(path, 0).catch((e) => e)
    expect(err.message).toBe(
      'Worker was not configured with an ArtifactStorage adapter, but the job requires remote assets.',
    )
    expect(err.code).toBe('ERR_STORAGE_REQUIRED')
    expect(existsSync(join(workspace, 'ran'))).toBe(false)
  })

  it('does not call storage for a job without assets', async () => {
    for (const assetsUrl of [undefined, '']) {
      const { workspace, path } = jobWithAssets(assetsUrl, 'true')
      const storage = new DelayedStorage(0)
      await new WorkerRuntime({ workspaceDir: workspace, storage }).run(path, 0)
      expect(storage.calls).toEqual([])
    }
  })

  it('refuses a storage without downloadAssetBundle at construction', () => {
    for (const storage of [{}, { downloadAssetBundle: 'nope' }, 42]) {
      expect(() => new WorkerRuntime({ workspaceDir: '/tmp', storage: storage as unknown as ArtifactStorage })).toThrow(
        expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }),
      )
    }
  })

  it('accepts storage: undefined and null as no storage', async () => {
    const { workspace, path } = jobWithAssets(undefined, 'echo ok')
    for (const storage of [undefined, null]) {
      const runtime = new WorkerRuntime({ workspaceDir: workspace, storage: storage as unknown as ArtifactStorage })
      expect((await runtime.run(path, 0)).stdout).toBe('ok\n')
    }
  })
})
