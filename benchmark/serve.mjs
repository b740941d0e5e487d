// A static file server on 127.0.0.1 in a process of its own, so that serving does not compete
// with the clients being measured for the same event loop. Prints its port, then serves
// files from the directory given as the first argument.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'

const root = process.argv[2]
const cache = new Map()
const server = createServer((req, res) => {
  const name = (req.url ?? '/').slice(1)
  if (!/^[\w.-]+$/.test(name)) return res.writeHead(404).end()
  try {
    if (!cache.has(name)) cache.set(name, readFileSync(join(root, name)))
    res.writeHead(200, { 'content-type': 'application/json' }).end(cache.get(name))
  } catch {
    res.writeHead(404).end()
  }
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => console.log(server.address().port))
process.stdin.on('end', () => process.exit(0)).resume()
