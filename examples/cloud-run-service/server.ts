// Cloud Run service: POST / with { jobPath, chunkIndex } renders one chunk per request, and
// { jobPath, merge: true } merges a job's chunks. Cloud Run sends many requests at once to one
// instance (up to 80 by default); one runtime serves them all, each job in a directory of its
// own (perJobWorkspace), so concurrent jobs never write into each other's files.
// The image (./Dockerfile) bundles this file into server.js and starts `node server.js`.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

import { WorkerRuntime } from '@helios-project/worker-runtime'

import { httpStorage, makeHandler } from '../lambda/handler.js'

async function readJson(req: IncomingMessage): Promise<unknown> {
  let body = ''
  for await (const piece of req) body += piece
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

/** The service's runtime: the workspace is HELIOS_WORKSPACE_DIR (service.yaml mounts a bucket there). */
export function serviceRuntime(): WorkerRuntime {
  return new WorkerRuntime({
    workspaceDir: process.env.HELIOS_WORKSPACE_DIR ?? '/tmp/helios',
    storage: httpStorage,
    perJobWorkspace: true,
    timeout: Number(process.env.HELIOS_CHUNK_TIMEOUT_MS ?? 55 * 60_000),
  })
}

/** The HTTP server; `listen(process.env.PORT)` it. */
export function createService(runtime: WorkerRuntime = serviceRuntime()): Server {
  const handle = makeHandler(() => runtime)
  return createServer(async (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end()
      return
    }
    const { statusCode, body } = await handle(await readJson(req))
    res.writeHead(statusCode, { 'content-type': 'application/json' }).end(body)
  })
}

// Cloud Run sets K_SERVICE and PORT in a service's container. HOST narrows the address the
// server listens on (all of them when unset).
if (process.env.K_SERVICE) {
  const server = createService()
  server.listen(Number(process.env.PORT ?? 8080), process.env.HOST, () => {
    const { port } = server.address() as AddressInfo
    console.log(JSON.stringify({ severity: 'INFO', message: `helios-render-service listening on port ${port}`, port }))
  })
}
