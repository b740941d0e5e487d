import { chmodSync, mkdirSync, readFileSync, writeFileSync, realpathSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime } from '../index.js'
import { cleanup, closeServers, existsSync, json, serve, specOf, tempDir, writeSpec } from './helpers'

afterAll(async () => {
  await closeServers()
  cleanup()
})

const node = JSON.stringify(process.execPath)

function setup(spec: object | string) {
  const dir = tempDir()
  const path = writeSpec(dir, spec)
  const workspace = join(dir, 'workspace')
  return { dir, path, workspace, runtime: new WorkerRuntime({ workspaceDir: workspace }) }
}

describe('loading the spec', () => {
  it('runs a chunk from an http URL', async () => {
    const { url } = await serve({ '/job.json': json(specOf('echo from-http')) })
    const { runtime } = setup({})
    const result = await runtime.run(`${url}/job.json`, 0)
    expect(result).toMatchObject({ exitCode: 0, stdout: 'from-http\n', stderr: '' })
  })

  it('reuses one keep-alive connection across runs', async () => {
    const { url, server } = await serve({ '/job.json': json(specOf('true')) })
    let connections = 0
    server.on('connection', () => connections++)
    const { runtime } = setup({})
    for (let i = 0; i < 5; i++) await runtime.run(`${url}/job.json`, 0)
    expect(connections).toBe(1)
  })

  it('runs a chunk from a file:// URL, an absolute path and a relative path', async () => {
    const { path, runtime } = setup(specOf('echo from-file'))
    for (const jobPath of [pathToFileURL(path).href, path, relative(process.cwd(), path)]) {
      const result = await runtime.run(jobPath, 0)
      expect(result.stdout, jobPath).toBe('from-file\n')
    }
  })

  it('rejects a 404 with the reason phrase first', async () => {
    const { url } = await serve({})
    const { runtime } = setup({})
    const err = await runtime.run(`${url}/missing.json`, 0).catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
    expect(err.message).toMatch(/^Failed to fetch job spec: Not Found/)
    expect(err.message).toContain('404')
    expect(err.message).toContain(`${url}/missing.json`)
  })

  it('rejects a 500, and keeps a custom reason phrase', async () => {
    const { url } = await serve({
      '/500': json({ error: 'x' }, 500),
      '/busy': (_req, res) => {
        res.writeHead(503, 'Busy Rendering')
        res.end()
      },
    })
    const { runtime } = setup({})
    await expect(runtime.run(`${url}/500`, 0)).rejects.toMatchObject({
      code: 'ERR_JOB_SPEC_FETCH',
      message: expect.stringMatching(/^Failed to fetch job spec: Internal Server Error/),
    })
    await expect(runtime.run(`${url}/busy`, 0)).rejects.toThrow(/^Failed to fetch job spec: Busy Rendering/)
  })

  it('rejects a refused connection naming the URL and the cause', async () => {
    const { url, server } = await serve({})
    await new Promise((resolve) => server.close(resolve))
    const { runtime } = setup({})
    const err = await runtime.run(`${url}/job.json`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_JOB_SPEC_FETCH')
    expect(err.message).toContain(`${url}/job.json`)
    expect(err.message).toMatch(/connection refused/i)
  })

  it('rejects a missing file as Node fs does', async () => {
    const { dir, runtime } = setup({})
    const missing = join(dir, 'missing.json')
    const err = await runtime.run(missing, 0).catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toBe(`ENOENT: no such file or directory, open '${missing}'`)
    expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open', path: missing })
  })

  it('rejects a directory with EISDIR', async () => {
    const { dir, runtime } = setup({})
    await expect(runtime.run(dir, 0)).rejects.toMatchObject({
      code: 'EISDIR',
      message: expect.stringMatching(/^EISDIR: illegal operation on a directory/),
    })
  })

  it.each(['ftp://example.test/job.json', 's3://bucket/job.json'])('refuses the scheme of %s', async (jobPath) => {
    const { runtime } = setup({})
    const err = await runtime.run(jobPath, 0).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_URL_SCHEME')
    expect(err.message).toContain(`'${jobPath.split(':')[0]}:'`)
    expect(err.message).toMatch(/http:, https: or file:/)
  })

  it.each(['http:///x', 'http://', 'https://user:secret@127.0.0.1/job.json'])('refuses the URL %s', async (jobPath) => {
    const { runtime } = setup({})
    await expect(runtime.run(jobPath, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_URL', name: 'TypeError' })
  })
})

describe('validating the spec', () => {
  it('reports invalid JSON with the source, line and column', async () => {
    const { path, runtime } = setup('{\n  "chunks": [\n    { "id": 0, }\n  ]\n}')
    const err = await runtime.run(path, 0).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_JOB_SPEC')
    expect(err.message).toContain(path)
    expect(err.message).toMatch(/line 3 column \d+/)
    expect(err).toMatchObject({ line: 3 })
  })

  it('reports invalid JSON served over HTTP with the URL', async () => {
    const { url } = await serve({ '/bad.json': json('{"chunks": [') })
    const { runtime } = setup({})
    const err = await runtime.run(`${url}/bad.json`, 0).catch((e) => e)
    expect(err.code).toBe('ERR_INVALID_JOB_SPEC')
    expect(err.message).toContain(`${url}/bad.json`)
    expect(err.message).toMatch(/line 1 column \d+/)
  })

  it.each(['{}', 'null', '[]', '{"chunks":{}}', '42', '"chunks"', '{"chunks":null}'])(
    'rejects %s as missing the chunks array',
    async (text) => {
      const { path, runtime } = setup(text)
      const err = await runtime.run(path, 0).catch((e) => e)
      expect(err).toBeInstanceOf(Error)
      expect(err.message).toBe('Invalid JobSpec: missing chunks array')
      expect(err.code).toBe('ERR_INVALID_JOB_SPEC')
    },
  )

  it('accepts a lean spec with only id and chunks of id and command', async () => {
    const { path, runtime } = setup({ id: 'lean', chunks: [{ id: 4, command: 'echo lean' }] })
    await expect(runtime.run(path, 4)).resolves.toMatchObject({ exitCode: 0, stdout: 'lean\n' })
  })

  it('rejects an unknown chunk id with the exact message', async () => {
    const { path, runtime } = setup(specOf('true', 'true'))
    const err = await runtime.run(path, 7).catch((e) => e)
    expect(err.message).toBe('Chunk with ID 7 not found in job spec')
    expect(err.code).toBe('ERR_CHUNK_NOT_FOUND')
  })

  it('runs the first of two chunks with the same id', async () => {
    const { path, runtime } = setup({ chunks: [{ id: 2, command: 'echo first' }, { id: 2, command: 'echo second' }] })
    expect((await runtime.run(path, 2)).stdout).toBe('first\n')
  })

  it('rejects a chosen chunk without a command string, naming the chunk', async () => {
    const { path, runtime } = setup({ chunks: [{ id: 0, command: 'true' }, { id: 1 }, { id: 2, command: ['ls'] }] })
    await expect(runtime.run(path, 1)).rejects.toMatchObject({
      code: 'ERR_INVALID_JOB_SPEC',
      message: expect.stringContaining('chunk 1 (chunks[1]) has no command'),
    })
    await expect(runtime.run(path, 2)).rejects.toMatchObject({
      code: 'ERR_INVALID_JOB_SPEC',
      message: expect.stringContaining('chunk 2 (chunks[2]) has a command that is not a string'),
    })
    // Other chunks may be incomplete: chunk 0 still runs.
    await expect(runtime.run(path, 0)).resolves.toMatchObject({ exitCode: 0 })
  })

  it('rejects a command that cannot be parsed', async () => {
    const { path, runtime } = setup(specOf('', 'echo "unterminated'))
    await expect(runtime.run(path, 0)).rejects.toMatchObject({
      code: 'ERR_INVALID_COMMAND',
      message: 'Command string cannot be empty',
    })
    await expect(runtime.run(path, 1)).rejects.toMatchObject({
      code: 'ERR_INVALID_COMMAND',
      message: expect.stringContaining('Unterminated double quote'),
    })
  })
})

describe('running the command', () => {
  it('resolves a non-zero exit with its code and both streams', async () => {
    const { path, runtime } = setup(specOf(`sh -c "echo out; echo err >&2; exit 3"`))
    const result = await runtime.run(path, 0)
    expect(result).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' })
    expect(result.durationMs).toBeGreaterThan(0)
    expect('signal' in result).toBe(false)
    expect('timedOut' in result).toBe(false)
  })

  it('reports exit by a signal as -1 with the signal', async () => {
    const { path, runtime } = setup(specOf(`sh -c "kill -TERM $$"`))
    expect(await runtime.run(path, 0)).toMatchObject({ exitCode: -1, signal: 'SIGTERM' })
  })

  it('measures durationMs around the process', async () => {
    const { path, runtime } = setup(specOf('sleep 0.2'))
    const result = await runtime.run(path, 0)
    expect(result.durationMs).toBeGreaterThanOrEqual(190)
  })

  it('runs in the workspace, creating it recursively', async () => {
    const { dir, path } = setup(specOf('pwd'))
    const workspace = join(dir, 'a', 'b', 'c')
    const runtime = new WorkerRuntime({ workspaceDir: workspace })
    expect(existsSync(workspace)).toBe(false)
    const result = await runtime.run(path, 0)
    expect(realpathSync(result.stdout.trim())).toBe(realpathSync(workspace))
    expect(runtime.workspaceDir).toBe(workspace)
  })

  it('refuses a workspace that is a file', async () => {
    const { dir, path } = setup(specOf('true'))
    const file = join(dir, 'not-a-dir')
    writeFileSync(file, '')
    const runtime = new WorkerRuntime({ workspaceDir: file })
    const err = await runtime.run(path, 0).catch((e) => e)
    expect(err.code).toBe('ENOTDIR')
    expect(err.message).toContain(file)
  })

  it('passes shell metacharacters as plain arguments', async () => {
    const { path, runtime, workspace } = setup(specOf('echo a;b | c && $(d) > e `f` *'))
    const result = await runtime.run(path, 0)
    expect(result.stdout).toBe('a;b | c && $(d) > e `f` *\n')
    expect(existsSync(join(workspace, 'e'))).toBe(false)
  })

  it('passes quoted arguments intact', async () => {
    const { path, runtime } = setup(specOf(`${node} -e "console.log(JSON.stringify(process.argv.slice(1)))" title="My 'Awesome' Video" a\\ b ""`))
    expect(JSON.parse((await runtime.run(path, 0)).stdout)).toEqual(["title=My 'Awesome' Video", 'a b', ''])
  })

  it.runIf(process.platform === 'linux')('starts a command as Node spawn does: argv[0] as written, signals 1-31 at their defaults, none blocked', async () => {
    // Node ignores SIGPIPE and SIGXFSZ itself; libuv gives its commands the defaults again.
    const { spawnSync } = await import('node:child_process')
    const commands = [['grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status'], ['cat', '/proc/self/cmdline']]
    const ours: string[] = []
    const nodes: string[] = []
    for (const [program, ...args] of commands) {
      const { path, runtime } = setup(specOf([program, ...args].join(' ')))
      ours.push((await runtime.run(path, 0)).stdout)
      nodes.push(spawnSync(program, args, { encoding: 'utf8' }).stdout)
    }
    // Signals 32 and 33 are glibc's own: a command inherits them as this process has them, and
    // glibc sets them up again in every program that uses it.
    const low = (text: string) => [...text.matchAll(/Sig\w+:\s*(\w+)/g)].map((m) => BigInt(`0x${m[1]}`) & 0x7fffffffn)
    expect(low(ours[0])).toEqual(low(nodes[0]))
    expect(low(ours[0])).toEqual([0n, 0n])
    expect(ours[1]).toBe('cat\0/proc/self/cmdline\0')
    expect(ours[1]).toBe(nodes[1])
  })

  it.runIf(process.platform !== 'win32')("gives a command its stdin, stdout and stderr when the process has closed its own 0 and 1", async () => {
    // The next pipe then takes descriptors 0 and 1: its write end is already the command's stdout.
    const dir = tempDir()
    const path = writeSpec(dir, specOf('sh -c "cat; echo out; echo err >&2"'))
    const script = `
      const { closeSync, writeFileSync } = require('node:fs')
      const { WorkerRuntime } = require(${JSON.stringify(join(__dirname, '..', 'index.js'))})
      const runtime = new WorkerRuntime({ workspaceDir: ${JSON.stringify(join(dir, 'ws'))} })
      runtime.run(${JSON.stringify(path)}, 0).then(() => {
        closeSync(0)
        closeSync(1)
        return runtime.run(${JSON.stringify(path)}, 0, { timeout: 5000 })
      }).then((result) => writeFileSync(${JSON.stringify(join(dir, 'result.json'))}, JSON.stringify(result)))`
    const { spawnSync } = await import('node:child_process')
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
    expect(child.stderr).toBe('')
    const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'))
    expect(result).toMatchObject({ exitCode: 0, stdout: 'out\n', stderr: 'err\n' })
  })

  it('rejects an unknown program as spawn does', async () => {
    const { path, runtime } = setup(specOf('no-such-program-hwr --flag'))
    const err = await runtime.run(path, 0).catch((e) => e)
    expect(err.message).toBe('spawn no-such-program-hwr ENOENT')
    expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'spawn no-such-program-hwr', path: 'no-such-program-hwr' })
  })

  it('rejects a file without execute permission with EACCES', async () => {
    const { dir, path } = setup(specOf('./script.sh'))
    const workspace = join(dir, 'ws')
    mkdirSync(workspace)
    writeFileSync(join(workspace, 'script.sh'), '#!/bin/sh\necho ran\n')
    chmodSync(join(workspace, 'script.sh'), 0o644)
    const runtime = new WorkerRuntime({ workspaceDir: workspace })
    await expect(runtime.run(path, 0)).rejects.toMatchObject({ code: 'EACCES', message: 'spawn ./script.sh EACCES' })
  })

  it('keeps a multi-byte character split across pipe reads intact', async () => {
    const dir = tempDir()
    const script = join(dir, 'emit.js')
    writeFileSync(
      script,
      `const fs = require('fs');
       const bytes = Buffer.from('😀'.repeat(200000));
       for (let i = 0; i < bytes.length; i += 4093) fs.writeSync(1, bytes.subarray(i, i + 4093));`,
    )
    const path = writeSpec(dir, specOf(`${node} ${JSON.stringify(script)}`))
    const result = await new WorkerRuntime({ workspaceDir: dir }).run(path, 0)
    expect(result.stdout.length).toBe('😀'.repeat(200000).length)
    expect(result.stdout === '😀'.repeat(200000)).toBe(true)
    expect(result.stdout).not.toContain('\uFFFD')
  })

  it('decodes invalid UTF-8 as U+FFFD', async () => {
    const { path, runtime } = setup(specOf(`printf 'a\\\\377b'`))
    expect((await runtime.run(path, 0)).stdout).toBe('a\uFFFDb')
  })

  it('serves 100 concurrent runs on one runtime', async () => {
    const commands = Array.from({ length: 100 }, (_, i) => `sh -c "echo chunk-${i}"`)
    const { path, runtime } = setup(specOf(...commands))
    const results = await Promise.all(commands.map((_, i) => runtime.run(path, i)))
    results.forEach((result, i) => expect(result).toMatchObject({ exitCode: 0, stdout: `chunk-${i}\n` }))
  })
})

describe('checking arguments', () => {
  const { path, runtime, workspace } = setup(specOf('touch ran'))

  it.each([
    [1.5, 'ERR_OUT_OF_RANGE'],
    [Number.NaN, 'ERR_OUT_OF_RANGE'],
    [-0.5, 'ERR_OUT_OF_RANGE'],
    [Number.POSITIVE_INFINITY, 'ERR_OUT_OF_RANGE'],
    [2 ** 53, 'ERR_OUT_OF_RANGE'],
    ['3', 'ERR_INVALID_ARG_TYPE'],
    [null, 'ERR_INVALID_ARG_TYPE'],
    [undefined, 'ERR_INVALID_ARG_TYPE'],
    [0n, 'ERR_INVALID_ARG_TYPE'],
  ])('refuses chunkId %s with %s, never coercing it', async (chunkId, code) => {
    const err = await runtime.run(path, chunkId as number).catch((e) => e)
    expect(err).toBeInstanceOf(TypeError)
    expect(err.code).toBe(code)
    expect(err.message).toContain('"chunkId"')
    expect(existsSync(join(workspace, 'ran'))).toBe(false)
  })

  it.each([[42], [''], [undefined], [{}]])('refuses jobPath %s', async (jobPath) => {
    const err = await runtime.run(jobPath as string, 0).catch((e) => e)
    expect(err).toBeInstanceOf(TypeError)
    expect(err.code).toBe('ERR_INVALID_ARG_TYPE')
    expect(err.message).toContain('"jobPath"')
  })

  it('refuses a bad config at construction', () => {
    const make = (config: unknown) => () => new WorkerRuntime(config as { workspaceDir: string })
    expect(make(undefined)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' }))
    expect(make({})).toThrow(/"config.workspaceDir" property must be of type string\. Received undefined/)
    expect(make({ workspaceDir: 5 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(make({ workspaceDir: '' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
  })

  it('reads each spec anew: a changed file is seen by the next run', async () => {
    const { path: p, runtime: r } = setup(specOf('echo one'))
    expect((await r.run(p, 0)).stdout).toBe('one\n')
    writeFileSync(p, JSON.stringify(specOf('echo two')))
    expect((await r.run(p, 0)).stdout).toBe('two\n')
  })
})
