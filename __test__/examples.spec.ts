import type { AddressInfo } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'

import { createService } from '../examples/cloud-run-service/server'
import { handler } from '../examples/lambda/handler'
import { cleanup, specOf, tempDir, writeSpec } from './helpers'

afterAll(cleanup)

const spec = writeSpec(tempDir(), specOf('echo rendered', 'sh -c "echo broken >&2; exit 3"'))

describe('the Lambda handler', () => {
  it('renders a chunk: 200', async () => {
    const response = await handler({ jobPath: spec, chunkIndex: 0 })
    expect(response.statusCode).toBe(200)
    expect(JSON.parse(response.body)).toMatchObject({ message: 'Chunk rendered', exitCode: 0, stdoutTail: 'rendered\n' })
  })

  it.each([null, 'x', {}, { jobPath: spec }, { jobPath: '', chunkIndex: 0 }, { jobPath: spec, chunkIndex: 1.5 }, { jobPath: spec, chunkIndex: '0' }])(
    'refuses the event %j: 400',
    async (event) => {
      const response = await handler(event)
      expect(response.statusCode).toBe(400)
      expect(JSON.parse(response.body).message).toMatch(/^Bad event: /)
    },
  )

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
  const service = createService()
  const listening = new Promise<string>((resolve) =>
    service.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(service.address() as AddressInfo).port}/`)),
  )
  afterAll(() => new Promise((resolve) => service.close(resolve)))
  const post = async (body: string) => {
    const response = await fetch(await listening, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  }

  it('renders a chunk per request, many at once', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => post(JSON.stringify({ jobPath: spec, chunkIndex: 0 }))))
    for (const r of results) expect(r).toMatchObject({ status: 200, body: { exitCode: 0 } })
  })

  it('answers 400 to a bad event and 500 to a failed chunk', async () => {
    expect((await post('not json')).status).toBe(400)
    expect((await post(JSON.stringify({ jobPath: spec }))).status).toBe(400)
    expect((await post(JSON.stringify({ jobPath: spec, chunkIndex: 1 }))).status).toBe(500)
  })
})
