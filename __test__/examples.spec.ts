// The Lambda handler and the Cloud Run service, run in this process against specs on disk.
// (examples-manifests.spec.ts parses the engines' manifests; examples-bundles.spec.ts bundles
// the handler and the service as their instructions say and runs the bundles.)
import { existsSync, readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime } from '@helios-project/worker-runtime'

import { createService } from '../examples/cloud-run-service/server'
import { handler } from '../examples/lambda/handler'
import { cleanup, tempDir, writeSpec } from './helpers'

afterAll(cleanup)

// The handler makes its runtime on its first invocation, from this variable.
const lambdaWorkspace = tempDir()
process.env.HELIOS_WORKSPACE_DIR = lambdaWorkspace

const spec = writeSpec(tempDir(), {
  id: 'job-test',
  chunks: [
    { id: 0, command: 'sh -c "echo rendered; echo frame-0 > out-0.txt"', outputFile: 'out-0.txt' },
    { id: 1, command: 'sh -c "echo broken >&2; exit 3"' },
  ],
  mergeCommand: 'sh -c "cat out-0.txt > merged.txt"',
})

describe('the Lambda handler', () => {
  it('renders a chunk into the job\'s own directory of the workspace: 200 with the output\'s path and size', async () => {
    const response = await handler({ jobPath: spec, chunkIndex: 0 })
    expect(response.statusCode).toBe(200)
    const outputPath = join(lambdaWorkspace, 'job-test', 'out-0.txt')
    expect(JSON.parse(response.body)).toMatchObject({ message: 'Chunk rendered', exitCode: 0, stdoutTail: 'rendered\n', outputPath, outputBytes: 8 })
    expect(readFileSync(outputPath, 'utf8')).toBe('frame-0\n')
  })

  it('merges in the same directory: 200', async () => {
    expect((await handler({ jobPath: spec, chunkIndex: 0 })).statusCode).toBe(200)
    const response = await handler({ jobPath: spec, merge: true })
    expect(response.statusCode).toBe(200)
    expect(JSON.parse(response.body)).toMatchObject({ message: 'Merged', exitCode: 0 })
    expect(readFileSync(join(lambdaWorkspace, 'job-test', 'merged.txt'), 'utf8')).toBe('frame-0\n')
  })

  it.each([
    null,
    'x',
    {},
    { jobPath: spec },
    { jobPath: '', chunkIndex: 0 },
    { jobPath: spec, chunkIndex: 1.5 },
    { jobPath: spec, chunkIndex: '0' },
    { jobPath: spec, merge: 'yes' },
    { jobPath: spec, merge: true, chunkIndex: 0 },
  ])('refuses the event %j: 400', async (event) => {
    const response = await handler(event)
    expect(response.statusCode).toBe(400)
    expect(JSON.parse(response.body).message).toMatch(/^Bad event: /)
  })

  it('reports a non-zero exit: 500 with the stderr', async () => {
    const response = await handler({ jobPath: spec, chunkIndex: 1 })
    expect(response.statusCode).toBe(500)
    expect(JSON.parse(response.body)).toMatchObject({ message: 'Rendering failed', exitCode: 3, stderrTail: 'broken\n' })
  })

  it('reports an error: 500 with its message and code', async () => {
    const response = await handler({ jobPath: spec, chunkIndex: 9 })
    expect(response.statusCode).toBe(500)
    expect(JSON.parse(response.body)).toEqual({ message: 'Chunk with ID 9 not found in job spec', code: 'ERR_CHUNK_NOT_FOUND' })
  })
})

describe('the Cloud Run service', () => {
  const workspace = tempDir()
  const service = createService(new WorkerRuntime({ workspaceDir: workspace, perJobWorkspace: true }))
  const listening = new Promise<string>((resolve) =>
    service.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(service.address() as AddressInfo).port}/`)),
  )
  afterAll(() => new Promise((resolve) => service.close(resolve)))
  const post = async (body: string) => {
    const response = await fetch(await listening, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  }

  it('renders a chunk per request, many at once, each job in its own directory', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => post(JSON.stringify({ jobPath: spec, chunkIndex: 0 }))))
    for (const r of results) expect(r).toMatchObject({ status: 200, body: { exitCode: 0, outputPath: join(workspace, 'job-test', 'out-0.txt') } })
    expect(existsSync(join(workspace, 'out-0.txt'))).toBe(false)
  })

  it('answers 400 to a bad event, 405 to a GET and 500 to a failed chunk', async () => {
    expect((await post('not json')).status).toBe(400)
    expect((await post(JSON.stringify({ jobPath: spec }))).status).toBe(400)
    expect((await fetch(await listening)).status).toBe(405)
    expect((await post(JSON.stringify({ jobPath: spec, chunkIndex: 1 }))).status).toBe(500)
  })
})
