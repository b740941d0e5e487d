import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime, type FetchOptions } from '../index.js'
import pkg from '../package.json'
import { cleanup, closeServers, hasOpenssl, json, serve, specOf, tempDir, writeSpec, type Handler } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const fast: FetchOptions = { retryBaseMs: 10, retryMaxMs: 50 }
const runtime = (fetch: FetchOptions = fast) => new WorkerRuntime({ workspaceDir: tempDir(), fetch })
const ok = json(specOf('echo fetched'))

describe('retries', () => {
  it('succeeds on the third attempt after 503, 503', async () => {
    let n = 0
    const { url, hits } = await serve({ '/job.json': (req, res) => (++n < 3 ? json('busy', 503)(req, res) : ok(req, res)) })
    expect(await runtime().run(`${url}/job.json`, 0)).toMatchObject({ stdout: 'fetched\n' })
    expect(hits).toHaveLength(3)
  })

  it('makes one attempt only for a 404', async () => {
    const { url, hits } = await serve({})
    await expect(runtime().run(`${url}/job.json`, 0)).rejects.toThrow(/^Failed to fetch job spec: Not Found/)
    expect(hits).toHaveLength(1)
  })

  it('says how many attempts were made and what each failed with', async () => {
    const { url, hits } = await serve({ '/job.json': json('down', 503) })
    const err = await runtime({ ...fast, retries: 2 }).run(`${url}/job.json`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
    expect(err.message).toMatch(/^Failed to fetch job spec: Service Unavailable \(HTTP 503 from /)
    expect(err.message).toContain('after 3 attempts: HTTP 503; HTTP 503; HTTP 503')
    expect(hits).toHaveLength(3)
  })

  it('waits as long as Retry-After says on a 429', async () => {
    let n = 0
    const { url } = await serve({
      '/job.json': (req, res) => {
        if (n++ > 0) return ok(req, res)
        res.writeHead(429, { 'retry-after': '1' })
        res.end()
      },
    })
    const started = Date.now()
    await runtime({ retryBaseMs: 10, retryMaxMs: 5000 }).run(`${url}/job.json`, 0)
    expect(Date.now() - started).toBeGreaterThanOrEqual(950)
  })

  it('retries a connection reset in the middle of the body', async () => {
    let n = 0
    const body = JSON.stringify(specOf('echo fetched'))
    const { url, hits } = await serve({
      '/job.json': (req, res) => {
        if (n++ > 0) return ok(req, res)
        res.writeHead(200, { 'content-length': String(body.length) })
        res.write(body.slice(0, 10))
        setTimeout(() => res.socket?.destroy(), 20)
      },
    })
    expect((await runtime().run(`${url}/job.json`, 0)).stdout).toBe('fetched\n')
    expect(hits).toHaveLength(2)
  })

  it('retries a refused connection, then names it', async () => {
    const { url, server } = await serve({})
    await new Promise((resolve) => server.close(resolve))
    const err = await runtime({ ...fast, retries: 1 }).run(`${url}/job.json`, 0).catch((e) => e)
    expect(err.message).toMatch(/connection refused/)
    expect(err.message).toContain('after 2 attempts')
  })
})

describe('timeouts and limits', () => {
  it('gives up on a server that accepts and never answers, naming the timeout', async () => {
    const { url } = await serve({ '/job.json': () => {} })
    const err = await runtime({ retries: 0, timeoutMs: 300 }).run(`${url}/job.json`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
    expect(err.message).toContain('timed out after 300 ms (fetch.timeoutMs)')
  })

  it('gives up on a body that stops arriving, naming the idle timeout', async () => {
    const { url } = await serve({
      '/job.json': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.write('{"chunks": [')
      },
    })
    const err = await runtime({ retries: 0, idleTimeoutMs: 200 }).run(`${url}/job.json`, 0).catch((e) => e)
    expect(err.message).toContain('no data for 200 ms (fetch.idleTimeoutMs)')
  })

  it('cuts off a body larger than maxSpecBytes while it streams', async () => {
    let sent = 0
    const { url } = await serve({
      '/forever.json': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        const pump = () => {
          while (sent < 50_000_000 && res.write(' '.repeat(65536))) sent += 65536
          if (!res.destroyed && sent < 50_000_000) res.once('drain', pump)
        }
        pump()
      },
    })
    const err = await runtime({ maxSpecBytes: 100_000 }).run(`${url}/forever.json`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_JOB_SPEC')
    expect(err.message).toContain('maxSpecBytes (100000 bytes)')
    expect(sent).toBeLessThan(50_000_000)
  })

  it('refuses a spec file larger than maxSpecBytes', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, { chunks: [{ id: 0, command: 'true', pad: 'x'.repeat(5000) }] })
    const err = await runtime({ maxSpecBytes: 1000 }).run(path, 0).catch((e) => e)
    expect(err.message).toContain('maxSpecBytes (1000 bytes)')
  })
})

describe('HTTP details', () => {
  it('decodes gzip and brotli bodies', async () => {
    const body = JSON.stringify(specOf('echo fetched'))
    const { url } = await serve({
      '/gzip.json': (_req, res) => res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync(body)),
      '/br.json': (_req, res) => res.writeHead(200, { 'content-encoding': 'br' }).end(brotliCompressSync(body)),
    })
    const r = runtime()
    expect((await r.run(`${url}/gzip.json`, 0)).stdout).toBe('fetched\n')
    expect((await r.run(`${url}/br.json`, 0)).stdout).toBe('fetched\n')
  })

  it('does not retry a body that cannot be decoded: it would fail the same way again', async () => {
    const { url, hits } = await serve({ '/job.json': (_req, res) => res.writeHead(200, { 'content-encoding': 'gzip' }).end('{"chunks":[]}') })
    const err = await runtime().run(`${url}/job.json`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
    expect(err.message).toMatch(/the response body could not be read/)
    expect(err.message).not.toContain('attempts')
    expect(hits).toHaveLength(1)
  })

  it('takes an answer with as many header lines as fit in the 16 KiB head Node takes', async () => {
    const body = JSON.stringify(specOf('echo fetched'))
    const { url } = await serve({
      '/job.json': (_req, res) => {
        for (let i = 0; i < 1200; i++) res.setHeader(`x-h${i}`, 'v')
        res.writeHead(200, { 'content-type': 'application/json' }).end(body)
      },
    })
    expect(await (await fetch(`${url}/job.json`)).json()).toEqual(JSON.parse(body))
    expect((await runtime().run(`${url}/job.json`, 0)).stdout).toBe('fetched\n')
  })

  it('follows a chain of 3 redirects and refuses a chain of 11', async () => {
    const routes: Record<string, Parameters<typeof serve>[0][string]> = { '/r0': ok }
    for (let i = 1; i <= 11; i++) routes[`/r${i}`] = (_req, res) => res.writeHead(302, { location: `/r${i - 1}` }).end()
    const { url } = await serve(routes)
    expect((await runtime().run(`${url}/r3`, 0)).stdout).toBe('fetched\n')
    const err = await runtime().run(`${url}/r11`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
    expect(err.message).toMatch(/too many redirects/)
  })

  it('follows a redirect from a server that closes a kept-alive connection instead of answering on it', async () => {
    // HTTP/1.1 lets a server close a kept-alive connection at any time; the redirect must not
    // fail on every attempt by reusing a connection the server drops.
    const body = JSON.stringify(specOf('echo fetched'))
    const requests: string[] = []
    const server = createNetServer((socket) => {
      let answered = false
      socket.on('data', (data) => {
        const path = String(data).split(' ')[1]
        requests.push(path)
        if (answered) return socket.destroy()
        answered = true
        socket.write(
          path === '/start'
            ? 'HTTP/1.1 302 Found\r\nlocation: /ok\r\ncontent-length: 0\r\n\r\n'
            : `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        )
      })
    })
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/start`
      expect((await runtime().run(url, 0)).stdout).toBe('fetched\n')
      expect(requests.at(-1)).toBe('/ok')
    } finally {
      server.close()
    }
  })

  it('sends configured headers and a User-Agent naming the package', async () => {
    let seen: Record<string, string | string[] | undefined> = {}
    const { url } = await serve({ '/job.json': (req, res) => ((seen = req.headers), ok(req, res)) })
    await runtime({ headers: { Authorization: 'Bearer s3cret', 'X-Helios-Worker': 'w-1' } }).run(`${url}/job.json`, 0)
    expect(seen.authorization).toBe('Bearer s3cret')
    expect(seen['x-helios-worker']).toBe('w-1')
    expect(seen['user-agent']).toBe(`helios-worker-runtime/${pkg.version}`)
  })

  it.skipIf(!hasOpenssl)('trusts a private CA only when given in caCertificates', async () => {
    const { ca, url, server } = await tlsServer((req, res) => ok(req, res))
    try {
      const refused = await runtime().run(url, 0).catch((e) => e)
      expect(refused.code).toBe('ERR_JOB_SPEC_FETCH')
      expect(refused.message).toMatch(/TLS error/)
      expect(refused.message).not.toContain('attempts')
      expect((await runtime({ ...fast, caCertificates: [ca] }).run(url, 0)).stdout).toBe('fetched\n')
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })

  it.skipIf(!hasOpenssl)('retries an HTTPS body cut off half-way (no TLS close_notify), as any reset', async () => {
    let n = 0
    const body = JSON.stringify(specOf('echo fetched'))
    const { ca, url, server } = await tlsServer((req, res) => {
      if (n++ > 0) return ok(req, res)
      res.writeHead(200, { 'content-length': String(body.length) })
      res.write(body.slice(0, body.length >> 1))
      setTimeout(() => res.socket?.destroy(), 20)
    })
    try {
      expect((await runtime({ ...fast, caCertificates: [ca] }).run(url, 0)).stdout).toBe('fetched\n')
      expect(n).toBe(2)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})

/** An HTTPS server on 127.0.0.1 with a certificate from a private CA made for the test. */
async function tlsServer(handler: Handler) {
  const dir = tempDir()
  const sh = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Helios Test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign')
  sh('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr')
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  sh('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-out', 'server.pem', '-extfile', 'ext.cnf')
  const server = createHttpsServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')) }, handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/job.json`
  return { ca: readFileSync(join(dir, 'ca.pem'), 'utf8'), url, server }
}

describe('big specs', () => {
  const chunks = Array.from({ length: 100_000 }, (_, id) => ({
    id,
    startFrame: id * 30,
    frameCount: 30,
    outputFile: `chunk-${id}.mp4`,
    command: `echo chunk-${id}`,
  }))
  const big = JSON.stringify({ id: 'big', metadata: { totalFrames: 3e6, fps: 30, width: 1920, height: 1080, duration: 1e5 }, chunks, mergeCommand: 'true' })

  it('finds the last of 100,000 chunks from a file and over HTTP', async () => {
    expect(big.length).toBeGreaterThan(10_000_000)
    const dir = tempDir()
    const path = writeSpec(dir, big)
    const { url } = await serve({ '/big.json': json(big) })
    const r = runtime()
    expect((await r.run(path, 99_999)).stdout).toBe('chunk-99999\n')
    expect((await r.run(`${url}/big.json`, 99_999)).stdout).toBe('chunk-99999\n')
  })

  it('still reports a broken byte near the end when the chosen chunk came early', async () => {
    const broken = `${big.slice(0, -200)}\u0001${big.slice(-199)}`
    const path = writeSpec(tempDir(), broken)
    const err = await runtime().run(path, 0).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_JOB_SPEC')
    expect(err.message).toMatch(/is not valid JSON: .* at line 1 column \d+/)
    // The column points at the broken byte (give or take the one serde_json had read).
    expect(Math.abs(err.column - (broken.length - 199))).toBeLessThanOrEqual(1)
  })
})

describe('validating fetch options', () => {
  it.each<[FetchOptions, string, RegExp]>([
    [{ retries: -1 }, 'ERR_OUT_OF_RANGE', /config\.fetch\.retries/],
    [{ retries: 1.5 }, 'ERR_OUT_OF_RANGE', /config\.fetch\.retries/],
    [{ timeoutMs: '5' as unknown as number }, 'ERR_INVALID_ARG_TYPE', /config\.fetch\.timeoutMs/],
    [{ maxSpecBytes: -1 }, 'ERR_OUT_OF_RANGE', /config\.fetch\.maxSpecBytes/],
    [{ headers: { 'bad header': 'x' } }, 'ERR_INVALID_ARG_VALUE', /config\.fetch\.headers\.bad header/],
    [{ headers: { A: 1 as unknown as string } }, 'ERR_INVALID_ARG_TYPE', /config\.fetch\.headers\.A/],
    [{ caCertificates: ['not a pem'] }, 'ERR_INVALID_ARG_VALUE', /caCertificates\[0\]/],
  ])('refuses %j', (fetch, code, message) => {
    expect(() => new WorkerRuntime({ workspaceDir: '/tmp', fetch })).toThrow(
      expect.objectContaining({ name: 'TypeError', code, message: expect.stringMatching(message) }),
    )
  })
})

describe('a runtime per request, as the infrastructure package creates them', () => {
  it('shares one kept-alive connection between runtimes with the same settings', async () => {
    const { url, server } = await serve({ '/job.json': json(specOf('true')) })
    let connections = 0
    server.on('connection', () => connections++)
    const fetch = { headers: { 'x-shared': 'per-request-runtimes' } }
    for (let i = 0; i < 5; i++) await new WorkerRuntime({ workspaceDir: tempDir(), fetch }).run(`${url}/job.json`, 0)
    expect(connections).toBe(1)
    // Other settings, another client.
    await new WorkerRuntime({ workspaceDir: tempDir(), fetch: { headers: { 'x-shared': 'no' } } }).run(`${url}/job.json`, 0)
    expect(connections).toBe(2)
  })

  it.skipIf(!hasOpenssl)('trusts NODE_EXTRA_CA_CERTS, as Node does', async () => {
    const { ca, url, server } = await tlsServer((req, res) => ok(req, res))
    const file = join(tempDir(), 'extra-ca.pem')
    writeFileSync(file, ca)
    const before = process.env.NODE_EXTRA_CA_CERTS
    try {
      process.env.NODE_EXTRA_CA_CERTS = file
      expect((await runtime().run(url, 0)).stdout).toBe('fetched\n')
    } finally {
      if (before === undefined) delete process.env.NODE_EXTRA_CA_CERTS
      else process.env.NODE_EXTRA_CA_CERTS = before
      server.closeAllConnections()
      server.close()
    }
  })

  it('a proxy variable that is not a URL fails only HTTP fetches, and names itself', async () => {
    const dir = tempDir()
    const path = writeSpec(dir, specOf('echo from a file'))
    const { url } = await serve({ '/job.json': ok })
    const before = process.env.http_proxy
    try {
      process.env.http_proxy = 'http://[not a url'
      const runtime = new WorkerRuntime({ workspaceDir: dir })
      expect((await runtime.run(path, 0)).stdout).toBe('from a file\n')
      const err = await runtime.run(`${url}/job.json`, 0).catch((e) => e)
      expect(err.message).toContain("http_proxy ('http://[not a url')")
    } finally {
      if (before === undefined) delete process.env.http_proxy
      else process.env.http_proxy = before
    }
  })

  it('goes through HTTP_PROXY, and around it for NO_PROXY', async () => {
    const { url } = await serve({ '/job.json': ok })
    const proxied: string[] = []
    const proxy = createHttpServer((req, res) => {
      proxied.push(req.url ?? '')
      const upstream = httpRequest(req.url ?? '', { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      })
      req.pipe(upstream)
    })
    await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done))
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY }
    try {
      process.env.HTTP_PROXY = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
      delete process.env.NO_PROXY
      expect((await runtime().run(`${url}/job.json`, 0)).stdout).toBe('fetched\n')
      expect(proxied).toEqual([`${url}/job.json`])
      process.env.NO_PROXY = '127.0.0.1'
      expect((await runtime().run(`${url}/job.json`, 0)).stdout).toBe('fetched\n')
      expect(proxied).toHaveLength(1)
      // `*` is every host, an IP address too, alone or in a list.
      for (const list of ['*', 'example.test, *']) {
        process.env.NO_PROXY = list
        expect((await runtime().run(`${url}/job.json`, 0)).stdout).toBe('fetched\n')
        expect(proxied, list).toHaveLength(1)
      }
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key]
        else process.env[key] = value
      }
      proxy.closeAllConnections()
      proxy.close()
    }
  })
})
