// Cloud Run service: POST / with { jobPath, chunkIndex } renders one chunk per request. Cloud
// Run sends up to 80 requests at once to one container; one runtime serves them all.
import { createServer, type IncomingMessage, type Server } from 'node:http'

import { handler as renderChunk } from '../lambda/handler.js'

async function readJson(req: IncomingMessage): Promise<unknown> {
  let body = ''
  for await (const piece of req) body += piece
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

/** The HTTP server; `listen(process.env.PORT)` it. */
export function createService(): Server {
  return createServer(async (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end()
      return
    }
    const { statusCode, body } = await renderChunk(await readJson(req))
    res.writeHead(statusCode, { 'content-type': 'application/json' }).end(body)
  })
}

// Cloud Run sets K_SERVICE (and PORT) in a service's container.
if (process.env.K_SERVICE) createService().listen(Number(process.env.PORT ?? 8080))
