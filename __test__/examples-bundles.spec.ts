// The images and bundles of examples/: the Dockerfiles parsed, and the Lambda handler and the
// Cloud Run service bundled with the very esbuild commands their instructions give (the
// README's for Lambda, the Dockerfile's for the service), then run from a directory holding
// nothing but the bundle, as the function's zip or the image's /app would.
import { execFile, spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, readdirSync, renameSync, symlinkSync } from 'node:fs'
import { basename, dirname, join, posix } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

import { parseCommand } from '@helios-project/worker-runtime'

import { cleanup, closeServers, json, serve, tempDir, type Handler } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const root = join(__dirname, '..')
const examples = join(root, 'examples')
const esbuild = join(root, 'node_modules', '.bin', 'esbuild')

type Instruction = { op: string; args: string; exec?: string[] }
type Stage = { name?: string; image: string; instructions: Instruction[] }

/** A Dockerfile's stages and instructions: continuation lines joined, comments dropped, the
 * exec (JSON) form of an instruction parsed. */
function parseDockerfile(path: string): Stage[] {
  const stages: Stage[] = []
  const lines = readFileSync(path, 'utf8').split('\n').filter((line) => !/^\s*#/.test(line))
  for (const line of lines.join('\n').replace(/\\\n/g, ' ').split('\n')) {
    const match = /^\s*([A-Za-z]+)\s+(.*\S)\s*$/.exec(line)
    if (!match) continue
    const op = match[1].toUpperCase()
    const args = match[2]
    if (op === 'FROM') {
      const [image, as, name] = args.split(/\s+/)
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] })
      continue
    }
    let exec: string[] | undefined
    if (args.startsWith('[')) exec = JSON.parse(args) as string[]
    stages.at(-1)!.instructions.push({ op, args, exec })
  }
  return stages
}

const only = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op)
const workdir = (stage: Stage) => only(stage, 'WORKDIR').at(-1)?.args ?? '/'

/** `COPY [--from=stage] src… dest`, as words. */
function copies(stage: Stage) {
  return only(stage, 'COPY').map((i) => {
    const words = i.exec ?? i.args.split(/\s+/)
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length)
    const paths = words.filter((w) => !w.startsWith('--'))
    return { from, sources: paths.slice(0, -1), dest: posix.resolve(workdir(stage), paths.at(-1)!) }
  })
}

/** Run `npx esbuild …` (as parsed from the instructions) with this repository's esbuild, in `cwd`. */
async function runEsbuild(words: string[], cwd: string) {
  expect(words.slice(0, 2)).toEqual(['npx', 'esbuild'])
  await promisify(execFile)(esbuild, words.slice(2), { cwd })
}

/** A directory laid out like the build's: the package installed (this repository, linked). */
function buildDir(): string {
  const dir = tempDir('hwr-bundle-')
  mkdirSync(join(dir, 'node_modules', '@helios-project'), { recursive: true })
  symlinkSync(root, join(dir, 'node_modules', '@helios-project', 'worker-runtime'), 'dir')
  return dir
}

/** Move a bundle's output to a fresh directory of its own, away from any node_modules. */
function isolate(outdir: string): string {
  const alone = join(tempDir('hwr-app-'), 'app')
  renameSync(outdir, alone)
  return alone
}

/** A spec served over loopback HTTP whose chunk copies the job's asset (downloaded by the
 * examples' httpStorage from the same server) into its outputFile. */
async function servedJob(id: string): Promise<string> {
  const routes: Record<string, Handler> = { '/assets/frame.txt': (_req, res) => res.end(`frame of ${id}\n`) }
  const { url } = await serve(routes)
  routes['/job.json'] = json({
    id,
    assetsUrl: `${url}/assets/frame.txt`,
    chunks: [{ id: 0, command: 'cp frame.txt out-0.txt', outputFile: 'out-0.txt' }],
  })
  return `${url}/job.json`
}

describe('the worker image (docker/Dockerfile)', () => {
  it('runs helios-worker as its entrypoint in exec form, so manifests pass only its arguments', () => {
    const stages = parseDockerfile(join(examples, 'docker', 'Dockerfile'))
    const [entrypoint] = only(stages.at(-1)!, 'ENTRYPOINT')
    expect(entrypoint.exec).toBeDefined()
    expect(basename(entrypoint.exec![0])).toBe('helios-worker')
    expect(only(stages.at(-1)!, 'CMD')).toEqual([])
  })
})

describe('the Lambda bundle', () => {
  it('is built by the README command, and renders a chunk from a spec over HTTP into the job\'s directory', async () => {
    // The README's command: the line of a fenced block that runs esbuild on the handler.
    const readme = readFileSync(join(examples, 'README.md'), 'utf8')
    const blocks = [...readme.matchAll(/^ *```sh\n([\s\S]*?)^ *```/gm)].map((m) => m[1])
    const commands = blocks.flatMap((b) => b.split('\n')).map((l) => l.trim()).filter(Boolean).map((l) => parseCommand(l))
    const bundling = commands.filter(({ command, args }) => command === 'npx' && args[0] === 'esbuild' && args[1] === 'lambda/handler.ts')
    expect(bundling).toHaveLength(1)
    const words = [bundling[0].command, ...bundling[0].args]
    expect(words).toContain('--platform=node')
    expect(words).toContain('--loader:.node=copy')
    const outdir = words.find((w) => w.startsWith('--outdir='))!.slice('--outdir='.length)

    const build = buildDir()
    mkdirSync(join(build, 'lambda'))
    copyFileSync(join(examples, 'lambda', 'handler.ts'), join(build, 'lambda', 'handler.ts'))
    await runEsbuild(words, build)
    const code = isolate(join(build, outdir))
    const files = readdirSync(code).sort()
    expect(files.filter((f) => f.endsWith('.node'))).toHaveLength(1)
    expect(files.filter((f) => !f.endsWith('.node'))).toEqual(['handler.js'])

    const jobPath = await servedJob('job-lambda')
    const workspace = tempDir()
    const invoke = `require(${JSON.stringify(join(code, 'handler.js'))}).handler(JSON.parse(process.argv[1])).then((r) => process.stdout.write(JSON.stringify(r)))`
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', invoke, JSON.stringify({ jobPath, chunkIndex: 0 })], {
      cwd: code,
      env: { PATH: process.env.PATH, HELIOS_WORKSPACE_DIR: workspace },
    })
    const response = JSON.parse(stdout) as { statusCode: number; body: string }
    const outputPath = join(workspace, 'job-lambda', 'out-0.txt')
    expect(response.statusCode, response.body).toBe(200)
    expect(JSON.parse(response.body)).toMatchObject({ message: 'Chunk rendered', exitCode: 0, outputPath })
    expect(readFileSync(outputPath, 'utf8')).toBe('frame of job-lambda\n')
  })
})

describe('the Cloud Run service image (cloud-run-service/Dockerfile)', () => {
  const stages = parseDockerfile(join(examples, 'cloud-run-service', 'Dockerfile'))
  const final = stages.at(-1)!

  /** Where the image's server.js comes from: the build stage, its esbuild command and entry. */
  function serverBuild() {
    const [cmd] = only(final, 'CMD')
    expect(only(final, 'ENTRYPOINT')).toEqual([])
    expect(cmd.exec?.[0]).toBe('node')
    const server = posix.resolve(workdir(final), cmd.exec![1])
    // The file CMD runs is copied from a stage's output directory.
    const copy = copies(final).find((c) => c.from && posix.dirname(server) === c.dest)!
    expect(copy, `a COPY --from into ${posix.dirname(server)}`).toBeDefined()
    const build = stages.find((s) => s.name === copy.from)!
    expect(copy.sources).toHaveLength(1)
    const produced = posix.join(copy.sources[0], posix.basename(server))
    // That stage's esbuild command writes it.
    const runs = only(build, 'RUN').map((r) => parseCommand(r.args)).map(({ command, args }) => [command, ...args])
    const bundling = runs.filter((w) => w[0] === 'npx' && w[1] === 'esbuild')
    expect(bundling).toHaveLength(1)
    const words = bundling[0]
    const entry = words[2]
    const outdir = words.find((w) => w.startsWith('--outdir='))!.slice('--outdir='.length)
    expect(posix.join(posix.resolve(workdir(build), outdir), posix.basename(entry, '.ts') + '.js')).toBe(produced)
    expect(words).toContain('--platform=node')
    expect(words).toContain('--loader:.node=copy')
    return { server, build, words, entry, outdir }
  }

  it('starts `node server.js`, and server.js is the bundle of server.ts made in the build stage', () => {
    const { server, build, entry } = serverBuild()
    expect(server).toBe('/app/server.js')
    // server.ts (and the handler it imports) are copied into the build stage where esbuild looks.
    const copied = copies(build).map((c) => ({ source: c.sources[0], dest: c.dest }))
    expect(copied).toContainEqual({ source: 'cloud-run-service/server.ts', dest: posix.resolve(workdir(build), entry) })
    expect(copied).toContainEqual({ source: 'lambda/handler.ts', dest: posix.resolve(workdir(build), 'lambda/handler.ts') })
  })

  it('builds as the Dockerfile says, and the bundle serves a chunk on PORT', async () => {
    const { build, words, outdir } = serverBuild()
    const dir = buildDir()
    for (const { sources, dest } of copies(build)) {
      const target = join(dir, posix.relative(workdir(build), dest))
      mkdirSync(dirname(target), { recursive: true })
      copyFileSync(join(examples, sources[0]), target)
    }
    await runEsbuild(words, dir)
    const app = isolate(join(dir, outdir))

    const workspace = tempDir()
    const child = spawn(process.execPath, ['server.js'], {
      cwd: app,
      env: { PATH: process.env.PATH, K_SERVICE: 'helios-test', PORT: '0', HOST: '127.0.0.1', HELIOS_WORKSPACE_DIR: workspace },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    try {
      let port: number | undefined
      for await (const line of createInterface({ input: child.stdout! })) {
        port = (JSON.parse(line) as { port?: number }).port
        if (port) break
      }
      expect(port).toBeGreaterThan(0)
      const jobPath = await servedJob('job-service')
      const response = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: JSON.stringify({ jobPath, chunkIndex: 0 }) })
      const outputPath = join(workspace, 'job-service', 'out-0.txt')
      expect(response.status).toBe(200)
      expect(await response.json()).toMatchObject({ message: 'Chunk rendered', exitCode: 0, outputPath })
      expect(readFileSync(outputPath, 'utf8')).toBe('frame of job-service\n')
    } finally {
      child.kill('SIGTERM')
      await exited
    }
  })
})
