// AWS Lambda: one invocation renders one chunk, { jobPath, chunkIndex }; once every chunk has
// answered 200, one more invocation, { jobPath, merge: true }, runs the spec's mergeCommand.
//
// The workspace is an Amazon EFS access point mounted on the function (HELIOS_WORKSPACE_DIR,
// default /mnt/helios). /tmp belongs to one execution environment and goes with it, and the
// chunks of a job run in many environments at once, so their outputs must land on storage
// they all share for the merge to find them. With perJobWorkspace every job works in a
// directory of its own, <workspaceDir>/<jobId>, which its chunks and its merge share and no
// other job touches; the job's assets are downloaded into it once.
import { createWriteStream } from 'node:fs'
import { basename, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'

import { WorkerRuntime, type ArtifactStorage, type WorkerResult } from '@helios-project/worker-runtime'

export type ChunkEvent = { jobPath: string; chunkIndex: number }
export type MergeEvent = { jobPath: string; merge: true }

export interface LambdaResponse {
  statusCode: number
  body: string
}

/**
 * Downloads a spec's http(s) `assetsUrl` into the job's workspace as one file, named as the
 * URL's last segment. Put the infrastructure package's S3 or GCS adapter here for buckets.
 */
export const httpStorage: ArtifactStorage = {
  async downloadAssetBundle(_jobId, remoteUrl, targetDir, { signal }) {
    const response = await fetch(remoteUrl, { signal })
    if (!response.ok || !response.body) {
      throw new Error(`Asset bundle download failed: HTTP ${response.status} from ${remoteUrl}`)
    }
    const file = join(targetDir, basename(new URL(remoteUrl).pathname) || 'assets')
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), createWriteStream(file), { signal })
  },
}

/** The event's fields, or why it cannot be run. */
export function parseEvent(event: unknown): ChunkEvent | MergeEvent | string {
  if (typeof event !== 'object' || event === null) return 'the event must be an object'
  const { jobPath, chunkIndex, merge } = event as Record<string, unknown>
  if (typeof jobPath !== 'string' || jobPath === '') return 'jobPath must be a non-empty string'
  if (merge !== undefined) {
    if (merge !== true) return 'merge must be true when given'
    if (chunkIndex !== undefined) return 'give either chunkIndex or merge, not both'
    return { jobPath, merge }
  }
  if (typeof chunkIndex !== 'number' || !Number.isSafeInteger(chunkIndex) || chunkIndex < 0) {
    return 'chunkIndex must be a non-negative integer'
  }
  return { jobPath, chunkIndex }
}

function summary(result: WorkerResult) {
  const { stdout, stderr, ...rest } = result
  return { ...rest, stdoutTail: stdout.slice(-4096), stderrTail: stderr.slice(-4096) }
}

/** A handler that runs every event on the runtime `runtime()` returns. */
export function makeHandler(runtime: () => WorkerRuntime): (event: unknown) => Promise<LambdaResponse> {
  return async (event) => {
    const parsed = parseEvent(event)
    if (typeof parsed === 'string') {
      return { statusCode: 400, body: JSON.stringify({ message: `Bad event: ${parsed}` }) }
    }
    try {
      if ('merge' in parsed) {
        const result = await runtime().merge(parsed.jobPath)
        const ok = result.exitCode === 0
        return { statusCode: ok ? 200 : 500, body: JSON.stringify({ message: ok ? 'Merged' : 'Merge failed', ...summary(result) }) }
      }
      const result = await runtime().run(parsed.jobPath, parsed.chunkIndex)
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
}

// One runtime per execution environment, made by its first invocation and reused by the rest.
let lambdaRuntime: WorkerRuntime | undefined

export const handler = makeHandler(
  () =>
    (lambdaRuntime ??= new WorkerRuntime({
      workspaceDir: process.env.HELIOS_WORKSPACE_DIR ?? '/mnt/helios',
      storage: httpStorage,
      perJobWorkspace: true,
      // Leave the last few seconds of the invocation for reporting.
      timeout: Number(process.env.HELIOS_CHUNK_TIMEOUT_MS ?? 14 * 60_000),
    })),
)
