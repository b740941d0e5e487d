// A catalogue of bad inputs: each row is an input, the exact `code` it must be refused with,
// and a fragment of the message. After every row Node must still be healthy: a good run
// still resolves.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { WorkerRuntime, type RunOptions, type WorkerRuntimeConfig } from '../index.js'
import { cleanup, specOf, tempDir, writeSpec } from './helpers'

afterAll(cleanup)

const dir = tempDir('hwr-catalogue-')
const workspaceDir = join(dir, 'ws')
mkdirSync(workspaceDir)
const good = writeSpec(dir, specOf('true'), 'good.json')
const runtime = new WorkerRuntime({ workspaceDir })
const raw = (name: string, content: string | Buffer) => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}
const spec = (name: string, value: unknown) => raw(name, JSON.stringify(value))

writeFileSync(join(dir, 'not-a-dir'), '')
writeFileSync(join(workspaceDir, 'no-exec.sh'), '#!/bin/sh\necho ran\n')
chmodSync(join(workspaceDir, 'no-exec.sh'), 0o644)
mkdirSync(join(workspaceDir, 'a-directory'))

type Row = [string, () => unknown, string, string | RegExp]
const construct = (config: unknown) => () => new WorkerRuntime(config as WorkerRuntimeConfig)
const run = (jobPath: unknown, chunkId: unknown = 0, options?: unknown) => () =>
  runtime.run(jobPath as string, chunkId as number, options as RunOptions)

const rows: Row[] = [
  // the constructor
  ['config undefined', construct(undefined), 'ERR_INVALID_ARG_TYPE', 'The "config" argument must be of type object'],
  ['config null', construct(null), 'ERR_INVALID_ARG_TYPE', 'Received null'],
  ['config a string', construct('/tmp'), 'ERR_INVALID_ARG_TYPE', "Received type string ('/tmp')"],
  ['no workspaceDir', construct({}), 'ERR_INVALID_ARG_TYPE', '"config.workspaceDir" property must be of type string'],
  ['workspaceDir a number', construct({ workspaceDir: 5 }), 'ERR_INVALID_ARG_TYPE', 'Received type number (5)'],
  ['workspaceDir empty', construct({ workspaceDir: '' }), 'ERR_INVALID_ARG_VALUE', 'config.workspaceDir'],
  ['workspaceDir with NUL', construct({ workspaceDir: 'a\0b' }), 'ERR_INVALID_ARG_VALUE', 'NUL'],
  ['storage without the method', construct({ workspaceDir, storage: {} }), 'ERR_INVALID_ARG_TYPE', 'config.storage.downloadAssetBundle'],
  ['storage a number', construct({ workspaceDir, storage: 5 }), 'ERR_INVALID_ARG_TYPE', '"config.storage"'],
  ['default timeout negative', construct({ workspaceDir, timeout: -1 }), 'ERR_OUT_OF_RANGE', 'config.timeout'],
  ['default killSignal unknown', construct({ workspaceDir, killSignal: 'SIGNOPE' }), 'ERR_INVALID_ARG_VALUE', 'SIGNOPE'],
  ['default maxBuffer a string', construct({ workspaceDir, maxBuffer: '1mb' }), 'ERR_INVALID_ARG_TYPE', 'config.maxBuffer'],
  ['fetch.retries negative', construct({ workspaceDir, fetch: { retries: -1 } }), 'ERR_OUT_OF_RANGE', 'config.fetch.retries'],
  ['fetch.caCertificates not PEM', construct({ workspaceDir, fetch: { caCertificates: ['x'] } }), 'ERR_INVALID_ARG_VALUE', 'not a PEM certificate'],
  ['default onStdout a number', construct({ workspaceDir, onStdout: 1 }), 'ERR_INVALID_ARG_TYPE', 'config.onStdout'],
  // run's arguments
  ['jobPath a number', run(42), 'ERR_INVALID_ARG_TYPE', 'The "jobPath" argument must be of type string'],
  ['jobPath empty', run(''), 'ERR_INVALID_ARG_TYPE', 'non-empty string'],
  ['jobPath with NUL', run('job\0.json'), 'ERR_INVALID_ARG_VALUE', 'NUL'],
  ['chunkId 1.5', run(good, 1.5), 'ERR_OUT_OF_RANGE', 'It must be a safe integer. Received 1.5'],
  ['chunkId NaN', run(good, Number.NaN), 'ERR_OUT_OF_RANGE', 'Received NaN'],
  ['chunkId a string', run(good, '3'), 'ERR_INVALID_ARG_TYPE', "Received type string ('3')"],
  ['chunkId Infinity', run(good, Number.POSITIVE_INFINITY), 'ERR_OUT_OF_RANGE', 'Received Infinity'],
  // run's options
  ['options a number', run(good, 0, 5), 'ERR_INVALID_ARG_TYPE', 'The "options" argument must be of type object'],
  ['timeout negative', run(good, 0, { timeout: -1 }), 'ERR_OUT_OF_RANGE', 'options.timeout'],
  ['killSignal unknown', run(good, 0, { killSignal: 'SIGNOPE' }), 'ERR_INVALID_ARG_VALUE', 'options.killSignal'],
  ['onStdout a string', run(good, 0, { onStdout: 'log' }), 'ERR_INVALID_ARG_TYPE', 'options.onStdout'],
  ['signal not an AbortSignal', run(good, 0, { signal: {} }), 'ERR_INVALID_ARG_TYPE', 'instance of AbortSignal'],
  ['env value an object', run(good, 0, { env: { A: {} } }), 'ERR_INVALID_ARG_TYPE', 'options.env.A'],
  ['env name with =', run(good, 0, { env: { 'A=B': 'x' } }), 'ERR_INVALID_ARG_VALUE', 'not a valid environment variable name'],
  // hostile and malformed JSON
  ['nesting 100,000 deep, closed', run(raw('deep.json', `${'['.repeat(100_000)}${']'.repeat(100_000)}`)), 'ERR_INVALID_JOB_SPEC', 'Invalid JobSpec: missing chunks array'],
  ['nesting 100,000 deep, unclosed', run(raw('deep-open.json', '{"chunks":' + '['.repeat(100_000))), 'ERR_INVALID_JOB_SPEC', 'EOF while parsing'],
  ['a spec over maxSpecBytes', () => new WorkerRuntime({ workspaceDir, fetch: { maxSpecBytes: 100 } }).run(spec('big.json', { chunks: [], pad: 'x'.repeat(200) }), 0), 'ERR_INVALID_JOB_SPEC', 'maxSpecBytes (100 bytes)'],
  ['duplicate keys, the last not an array', run(raw('dup.json', '{"chunks":[{"id":0,"command":"true"}],"chunks":{}}')), 'ERR_INVALID_JOB_SPEC', 'Invalid JobSpec: missing chunks array'],
  ['command of the wrong type', run(spec('type.json', { chunks: [{ id: 0, command: 42 }] })), 'ERR_INVALID_JOB_SPEC', 'not a string: found a number (42)'],
  ['command missing', run(spec('nocmd.json', { chunks: [{ id: 0, startFrame: 0 }] })), 'ERR_INVALID_JOB_SPEC', 'chunk 0 (chunks[0]) has no command string'],
  ['NUL byte in the command', run(spec('nul.json', { chunks: [{ id: 0, command: 'echo a\u0000b' }] })), 'ERR_INVALID_COMMAND', 'NUL byte'],
  ['trailing garbage', run(raw('trail.json', '{"chunks":[]} and more')), 'ERR_INVALID_JOB_SPEC', 'trailing characters'],
  ['an empty file', run(raw('empty.json', '')), 'ERR_INVALID_JOB_SPEC', 'EOF while parsing a value'],
  ['a trailing comma', run(raw('comma.json', '{"chunks":[{"id":0,"command":"true"},]}')), 'ERR_INVALID_JOB_SPEC', 'trailing comma'],
  ['assetsUrl not a string', run(spec('assets.json', { assetsUrl: 42, chunks: [] })), 'ERR_INVALID_JOB_SPEC', 'assetsUrl must be a string'],
  ['a string id never matches a number', run(spec('strid.json', { chunks: [{ id: '0', command: 'true' }] })), 'ERR_CHUNK_NOT_FOUND', 'Chunk with ID 0 not found in job spec'],
  ['assets without storage', run(spec('needs-storage.json', { assetsUrl: 's3://b/a.zip', chunks: [] })), 'ERR_STORAGE_REQUIRED', 'ArtifactStorage adapter'],
  // bad URLs
  ['an ftp URL', run('ftp://example.test/job.json'), 'ERR_INVALID_URL_SCHEME', "'ftp:'"],
  ['an s3 URL', run('s3://bucket/job.json'), 'ERR_INVALID_URL_SCHEME', 'http:, https: or file:'],
  ['http with no host', run('http:///job.json'), 'ERR_INVALID_URL', 'the URL has no host'],
  ['a URL with credentials', run('http://user:secret@127.0.0.1/job.json'), 'ERR_INVALID_URL', 'credentials'],
  ['a file URL on another host', run('file://fileserver/jobs/job.json'), 'ERR_INVALID_URL', 'local path'],
  // execution
  ['a missing spec file', run(join(dir, 'missing.json')), 'ENOENT', 'ENOENT: no such file or directory, open'],
  ['a workspace that is a file', () => new WorkerRuntime({ workspaceDir: join(dir, 'not-a-dir') }).run(good, 0), 'ENOTDIR', 'not-a-dir'],
  ['a command that is a directory', run(spec('dircmd.json', specOf('./a-directory'))), 'EACCES', 'spawn ./a-directory EACCES'],
  ['a command without execute permission', run(spec('noexec.json', specOf('./no-exec.sh'))), 'EACCES', 'spawn ./no-exec.sh EACCES'],
  ['an unknown program', run(spec('unknown.json', specOf('no-such-program-hwr'))), 'ENOENT', 'spawn no-such-program-hwr ENOENT'],
  ['an unterminated quote', run(spec('quote.json', specOf('echo "open'))), 'ERR_INVALID_COMMAND', 'Unterminated double quote'],
  ['an empty command', run(spec('emptycmd.json', specOf('   '))), 'ERR_INVALID_COMMAND', 'Command string cannot be empty'],
]

describe('the catalogue of bad inputs', () => {
  it.each(rows)('%s → %s', async (_, attempt, code, fragment) => {
    let error: unknown
    try {
      await attempt()
    } catch (e) {
      error = e
    }
    expect(error, 'it was refused').toBeInstanceOf(Error)
    const { code: actual, message } = error as { code: string; message: string }
    expect(actual).toBe(code)
    if (typeof fragment === 'string') expect(message).toContain(fragment)
    else expect(message).toMatch(fragment)
    // Node is still healthy.
    await expect(runtime.run(good, 0)).resolves.toMatchObject({ exitCode: 0 })
  })
})
