// Uses the package the way the infrastructure package does: its own ArtifactStorage
// interface (with more methods than the runtime calls), a Lambda-style handler and a
// Cloud Run-style handler. It must type-check with no casts against index.d.ts.
import { WorkerRuntime, parseCommand, type JobSpec, type WorkerResult } from '../index.js'

export interface ArtifactStorage {
  uploadAssetBundle(jobId: string, localDir: string): Promise<string>
  downloadAssetBundle(jobId: string, remoteUrl: string, targetDir: string): Promise<void>
  deleteAssetBundle(jobId: string, remoteUrl: string): Promise<void>
  uploadJobSpec(jobId: string, spec: JobSpec): Promise<string>
}

export interface WorkerPayload {
  jobPath: string
  chunkIndex: number
}

export async function lambdaHandler(
  event: WorkerPayload,
  storage?: ArtifactStorage,
): Promise<{ statusCode: number; body: string }> {
  const runtime = new WorkerRuntime({ workspaceDir: '/tmp/helios-workspace', storage })
  const result: WorkerResult = await runtime.run(event.jobPath, event.chunkIndex)
  if (result.exitCode !== 0) {
    return { statusCode: 500, body: JSON.stringify({ message: 'Rendering failed', stderr: result.stderr }) }
  }
  return {
    statusCode: 200,
    body: JSON.stringify({ message: 'Chunk rendered', output: result.stdout, durationMs: result.durationMs }),
  }
}

export class CloudRunWorker {
  private readonly runtime: WorkerRuntime
  constructor(workspaceDir: string, storage: ArtifactStorage) {
    this.runtime = new WorkerRuntime({ workspaceDir, storage })
  }
  async handle(payload: WorkerPayload, signal?: AbortSignal): Promise<number> {
    const { exitCode, stdout, stderr, durationMs, timedOut, signal: killedBy } = await this.runtime.run(
      payload.jobPath,
      payload.chunkIndex,
      { timeout: 15 * 60_000, signal, onStderr: (line) => process.stderr.write(line) },
    )
    console.log(stdout, stderr, durationMs, timedOut ?? false, killedBy ?? 'none')
    return exitCode
  }
}

export function checkSpec(spec: JobSpec): string[] {
  return spec.chunks.map((chunk) => parseCommand(chunk.command).command)
}
