// Runs one job through the native or the plain runtime in a fresh process and prints the
// growth of this process's peak RSS, in bytes: how much memory collecting the output took.
import { PlainWorkerRuntime } from './plain-runtime.mjs'
import { WorkerRuntime } from '../index.js'

const [which, jobPath, workspaceDir] = process.argv.slice(2)
const runtime = which === 'native' ? new WorkerRuntime({ workspaceDir }) : new PlainWorkerRuntime({ workspaceDir })
// Load everything the run needs first, so that only the run itself is measured.
await runtime.run(jobPath, 1)
const before = process.resourceUsage().maxRSS * 1024
const result = await runtime.run(jobPath, 0)
const after = process.resourceUsage().maxRSS * 1024
console.log(JSON.stringify({ growth: after - before, stdoutLength: result.stdout.length, exitCode: result.exitCode }))
