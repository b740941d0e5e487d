// A static file server on 127.0.0.1 in a process of its own, so that serving does not compete
// with the clients being measured for the same event loop. Serves the files of the directory
// given as the first argument over HTTP, and over HTTPS too when that directory holds
// server.pem and server.key; prints "<http port> <https port or 0>".
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import { join } from 'node:path'

const root = process.argv[2]
const cache = new Map()
const handler = (req, res) => {
  const name = (req.url ?? '/').slice(1)
  if (!/^[\w.-]+$/.test(name)) return res.writeHead(404).end()
  try {
    if (!cache.has(name)) cache.set(name, readFileSync(join(root, name)))
    res.writeHead(200, { 'content-type': 'application/json' }).end(cache.get(name))
  } catch {
    res.writeHead(404).end()
  }
}
const listen = (server) =>
  new Promise((resolve) => {
    server.keepAliveTimeout = 60_000
    server.listen(0, '127.0.0.1', () => resolve(server.address().port))
  })
const http = await listen(createServer(handler))
const tls = existsSync(join(root, 'server.pem'))
  ? await listen(createTlsServer({ cert: readFileSync(join(root, 'server.pem')), key: readFileSync(join(root, 'server.key')) }, handler))
  : 0
console.log(`${http} ${tls}`)
process.stdin.on('end', () => process.exit(0)).resume()
