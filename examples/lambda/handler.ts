// AWS Lambda: one invocation renders one chunk. Event: { jobPath, chunkIndex }.
import { WorkerRuntime, type WorkerResult } from '@helios-project/worker-runtime'

export interface ChunkEvent {
  jobPath: string
  chunkIndex: number
}

export interface LambdaResponse {
  statusCode: number
  body: string
}

// One runtime per container, reused by every invocation it serves. /tmp is Lambda's only
// writable place.
const runtime = new WorkerRuntime({
  workspaceDir: process.env.HELIOS_WORKSPACE_DIR ?? '/tmp/helios-workspace',
  // Leave the last few seconds of the invocation for reporting.
  timeout: Number(process.env.HELIOS_CHUNK_TIMEOUT_MS ?? 14 * 60_000),
})

/** The event's fields, or why it cannot be run. */
export function parseEvent(event: unknown): ChunkEvent | string {
  if (typeof event !== 'object' || event === null) return 'the event must be an object'
  const { jobPath, chunkIndex } = event as Record<string, unknown>
  if (typeof jobPath !== 'string' || jobPath === '') return 'jobPath must be a non-empty string'
  if (typeof chunkIndex !== 'number' || !Number.isSafeInteger(chunkIndex) || chunkIndex < 0) {
    return 'chunkIndex must be a non-negative integer'
  }
  return { jobPath, chunkIndex }
}

function summary(result: WorkerResult) {
  const { stdout, stderr, ...rest } = result
  return { ...rest, stdoutTail: stdout.slice(-4096), stderrTail: stderr.slice(-4096) }
}

export async function handler(event: unknown): Promise<LambdaResponse> {
  const parsed = parseEvent(event)
  if (typeof parsed === 'string') {
    return { statusCode: 400, body: JSON.stringify({ message: `Bad event: ${parsed}` }) }
  }
  try {
    const result = await runtime.run(parsed.jobPath, parsed.chunkIndex)
    const ok = result.exitCode === 0
    return {
      statusCode: ok ? 200 : 500,
      body: JSON.stringify({ message: ok ? 'Chunk rendered' : 'Rendering failed', chunk: parsed.chunkIndex, ...summary(result) }),
    }
  } catch (err) {
    const { message, code } = err as { message: string; code?: string }
    return { statusCode: 500, body: JSON.stringify({ message, code }) }
  }
}
