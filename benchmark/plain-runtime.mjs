// The plain-Node way of doing what WorkerRuntime does: the obvious code a TypeScript team
// writes with fetch, fs.readFile, JSON.parse and child_process.spawn. The benchmark checks it
// gives the same results as the native runtime before timing either.
import { spawn } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'

export function splitCommand(command) {
  const words = []
  let word = ''
  let inWord = false
  let quote = null
  for (let i = 0; i < command.length; i++) {
    const c = command[i]
    if (c === '\\' && i + 1 < command.length) {
      word += command[++i]
      inWord = true
    } else if (quote) {
      if (c === quote) quote = null
      else word += c
    } else if (c === '"' || c === "'") {
      quote = c
      inWord = true
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word)
      word = ''
      inWord = false
    } else {
      word += c
      inWord = true
    }
  }
  if (inWord) words.push(word)
  if (words.length === 0) throw new Error('Command string cannot be empty')
  return { command: words[0], args: words.slice(1) }
}

export class PlainWorkerRuntime {
  constructor({ workspaceDir, storage }) {
    this.workspaceDir = workspaceDir
    this.storage = storage
  }

  async run(jobPath, chunkId) {
    let spec
    if (/^https?:\/\//.test(jobPath)) {
      const response = await fetch(jobPath)
      if (!response.ok) throw new Error(`Failed to fetch job spec: ${response.statusText}`)
      spec = await response.json()
    } else {
      spec = JSON.parse(await readFile(jobPath, 'utf8'))
    }
    if (!spec || !Array.isArray(spec.chunks)) throw new Error('Invalid JobSpec: missing chunks array')
    if (spec.assetsUrl) {
      if (!this.storage) throw new Error('Worker was not configured with an ArtifactStorage adapter, but the job requires remote assets.')
      await this.storage.downloadAssetBundle(spec.id, spec.assetsUrl, this.workspaceDir)
    }
    const chunk = spec.chunks.find((c) => c.id === chunkId)
    if (!chunk) throw new Error(`Chunk with ID ${chunkId} not found in job spec`)
    const { command, args } = splitCommand(chunk.command)
    await mkdir(this.workspaceDir, { recursive: true })
    return new Promise((resolve, reject) => {
      const started = performance.now()
      const child = spawn(command, args, { cwd: this.workspaceDir, stdio: ['ignore', 'pipe', 'pipe'] })
      const out = []
      const err = []
      child.stdout.on('data', (d) => out.push(d))
      child.stderr.on('data', (d) => err.push(d))
      child.on('error', reject)
      child.on('close', (code, signal) =>
        resolve({
          exitCode: code ?? -1,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
          durationMs: performance.now() - started,
          ...(signal ? { signal } : {}),
        }),
      )
    })
  }
}
