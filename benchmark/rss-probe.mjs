// Runs one job through the native or the plain runtime in a fresh process and prints how
// much this process's resident memory grew while the run collected its output, in bytes:
// the peak sampled every few milliseconds during the run, or the growth of the kernel's
// peak-RSS counter, whichever is larger.
import { PlainWorkerRuntime } from './plain-runtime.mjs'
import { WorkerRuntime } from '../index.js'

const [which, jobPath, workspaceDir] = process.argv.slice(2)
const runtime = which === 'native' ? new WorkerRuntime({ workspaceDir }) : new PlainWorkerRuntime({ workspaceDir })
// Load everything the run needs first, so that only the run itself is measured.
await runtime.run(jobPath, 1)
globalThis.gc?.()
const baseline = process.memoryUsage.rss()
const peakBefore = process.resourceUsage().maxRSS * 1024
let sampled = baseline
const sampler = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage.rss())), 2)
const result = await runtime.run(jobPath, 0)
sampled = Math.max(sampled, process.memoryUsage.rss())
clearInterval(sampler)
const peakGrowth = process.resourceUsage().maxRSS * 1024 - peakBefore
console.log(
  JSON.stringify({ growth: Math.max(sampled - baseline, peakGrowth), stdoutLength: result.stdout.length, exitCode: result.exitCode }),
)
