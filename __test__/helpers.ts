import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A fresh directory under the OS temp dir, removed by `cleanup()`. */
export function tempDir(prefix = 'hwr-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}
const dirs: string[] = []
export function cleanup(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** A spec with one chunk per command, ids 0..n-1. */
export function specOf(...commands: string[]): object {
  return { id: 'job-test', chunks: commands.map((command, id) => ({ id, command })) }
}

/** Write `spec` (an object, or raw text) to `dir/name` and return the path. */
export function writeSpec(dir: string, spec: object | string, name = 'job.json'): string {
  const path = join(dir, name)
  writeFileSync(path, typeof spec === 'string' ? spec : JSON.stringify(spec))
  return path
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** An HTTP server on 127.0.0.1 with a route table; unknown paths answer 404. */
export async function serve(routes: Record<string, Handler>): Promise<{ url: string; server: Server; hits: string[] }> {
  const hits: string[] = []
  const server = createServer((req, res) => {
    hits.push(req.url ?? '')
    const route = routes[req.url ?? '']
    if (route) route(req, res)
    else {
      res.statusCode = 404
      res.end('not found')
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  servers.push(server)
  return { url: `http://127.0.0.1:${port}`, server, hits }
}
const servers: Server[] = []
export async function closeServers(): Promise<void> {
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections()
          s.close(() => resolve())
        }),
    ),
  )
}

export const json =
  (body: unknown, status = 200): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(typeof body === 'string' ? body : JSON.stringify(body))
  }

/** Whether a process is running: on Linux a zombie (dead, not yet reaped by whoever inherited
 * it) does not count; elsewhere signal 0 probes for the pid. */
export function alive(pid: number): boolean {
  if (process.platform === 'linux') {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
      return state !== 'Z' && state !== 'X'
    } catch {
      return false
    }
  }
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Poll until `check()` holds or `ms` pass; returns the last value of `check()`. */
export async function eventually(check: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (check()) return true
    if (Date.now() >= deadline) return false
    await sleep(20)
  }
}

export { existsSync }

/**
 * Write `__test__/consumer.ts` into `dir`, importing the package by `name`, with a tsconfig
 * that sees only `dir` (and this repository's @types/node); return a function that runs
 * `tsc` there and gives its diagnostics ('' when clean). `extra` is appended to the file.
 */
export function consumerProject(dir: string, name: string): { source: string; typecheck: (extra?: string) => string } {
  const root = join(__dirname, '..')
  const source = readFileSync(join(__dirname, 'consumer.ts'), 'utf8').replace("'../index.js'", `'${name}'`)
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        typeRoots: [join(root, 'node_modules', '@types')],
        types: ['node'],
      },
      files: ['consumer.ts'],
    }),
  )
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const typecheck = (extra = '') => {
    writeFileSync(join(dir, 'consumer.ts'), `${source}${extra}`)
    try {
      execFileSync(process.execPath, [tsc, '-p', dir], { cwd: dir, encoding: 'utf8' })
      return ''
    } catch (e) {
      // tsc prints its diagnostics on stdout.
      return String((e as { stdout?: string }).stdout ?? e)
    }
  }
  return { source, typecheck }
}

/** Collect the process warnings emitted while `work` runs (and shortly after), instead of
 * letting Node print them: the ones a test expects are asserted, not shown. */
export async function warningsDuring(work: () => Promise<unknown>): Promise<Error[]> {
  const warnings: Error[] = []
  const printers = process.listeners('warning')
  process.removeAllListeners('warning')
  const onWarning = (w: Error) => warnings.push(w)
  process.on('warning', onWarning)
  try {
    await work()
    await sleep(20)
  } finally {
    process.off('warning', onWarning)
    for (const printer of printers) process.on('warning', printer)
  }
  return warnings
}

/** Whether the `openssl` command is there to make test certificates; without it the TLS tests
 * are skipped, saying why (`.ci/run` installs it). */
export const hasOpenssl = spawnSync('openssl', ['version']).status === 0
if (!hasOpenssl) console.warn('openssl was not found: the tests that need a TLS certificate are skipped')
