// The demo job: a 96-frame animation rendered in 4 chunks by the native WorkerRuntime, once
// with the spec read from a file and once fetched from a loopback HTTP server, then merged
// into one video. Run it with `npm run demo`.
import { copyFileSync, cpSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

import { WorkerRuntime } from '../index.js'

const here = dirname(fileURLToPath(import.meta.url))
const specPath = join(here, 'job.json')
const spec = JSON.parse(readFileSync(specPath, 'utf8'))
const out = join(here, 'out')
rmSync(out, { recursive: true, force: true })

/** Stands in for the S3/GCS adapter: the bundle is the demo's assets folder. */
const storage = {
  downloads: 0,
  async downloadAssetBundle(jobId, remoteUrl, targetDir) {
    if (remoteUrl !== 'bundle://demo/assets') throw new Error(`unknown bundle ${remoteUrl}`)
    cpSync(join(here, 'assets'), targetDir, { recursive: true })
    this.downloads++
  },
}

const server = createServer((req, res) => {
  if (req.url !== '/jobs/helios-demo.json') return res.writeHead(404).end()
  res.writeHead(200, { 'content-type': 'application/json' }).end(readFileSync(specPath))
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const httpUrl = `http://127.0.0.1:${server.address().port}/jobs/helios-demo.json`

let failed = false
const merged = []
for (const [label, jobPath] of [
  ['file', relative(process.cwd(), specPath)],
  ['http', httpUrl],
]) {
  const workspaceDir = join(out, `${label}-run`)
  // A directory per job, its assets downloaded once however many chunks run at the same time.
  const runtime = new WorkerRuntime({ workspaceDir, storage, timeout: 120_000, perJobWorkspace: true })
  console.log(`\n${spec.id}: ${spec.chunks.length} chunks from ${jobPath}`)
  const started = performance.now()
  const results = await Promise.all(
    spec.chunks.map(async (chunk) => {
      let frames = 0
      const result = await runtime.run(jobPath, chunk.id, { lines: true, onStdout: () => frames++ })
      return { chunk, result, frames }
    }),
  )
  for (const { chunk, result, frames } of results) {
    const size = result.outputBytes ?? 0
    failed ||= result.exitCode !== 0 || !size
    console.log(
      `  chunk ${chunk.id}  frames ${chunk.startFrame}-${chunk.startFrame + chunk.frameCount - 1}` +
        `  exit ${result.exitCode}  ${result.durationMs.toFixed(0).padStart(5)} ms` +
        `  ${frames} frames reported  ${(size / 1024).toFixed(0)} KiB  peak RSS ${((result.maxRssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB`,
    )
    if (result.exitCode !== 0) console.log(result.stderr)
  }
  // The merge step, run the way an orchestrator would once every chunk is done.
  const done = await runtime.merge(jobPath)
  failed ||= done.exitCode !== 0
  console.log(`  merged in ${(performance.now() - started).toFixed(0)} ms total: ${done.stdout.trim() || done.stderr}`)
  merged.push(join(workspaceDir, spec.id, 'helios-demo.y4m'))
}
server.close()

const [fromFile, fromHttp] = merged.map((file) => readFileSync(file))
const frames = fromFile.toString('latin1').split('FRAME\n').length - 1
if (!fromFile.equals(fromHttp)) {
  console.error('the file run and the http run produced different videos')
  failed = true
}
if (frames !== spec.metadata.totalFrames) {
  console.error(`expected ${spec.metadata.totalFrames} frames, got ${frames}`)
  failed = true
}
mkdirSync(out, { recursive: true })
const video = join(out, 'helios-demo.y4m')
copyFileSync(merged[0], video)
console.log(
  `\n${failed ? 'FAILED' : 'OK'}: ${relative(process.cwd(), video)} — ${frames} frames, ` +
    `${spec.metadata.width}x${spec.metadata.height} at ${spec.metadata.fps} fps ` +
    `(asset bundle downloaded ${storage.downloads} times; files: ${readdirSync(join(out, 'file-run', spec.id)).length} in the job's directory)`,
)
console.log('Play it with: ffplay demo/out/helios-demo.y4m   (or mpv, or VLC)')
process.exit(failed ? 1 : 0)
