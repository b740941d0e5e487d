/* The public surface: the declarations generated from the Rust definitions (binding.d.ts),
 * without the generated loader's own internals, and the job spec's shapes. */
export { WorkerRuntime, parseCommand, quoteCommand } from './binding.js'
export type {
  ArtifactStorage,
  FetchOptions,
  ParsedCommand,
  RunOptions,
  WorkerResult,
  WorkerRuntimeConfig,
} from './binding.js'

// The job spec's shapes: the runtime reads the spec itself (only `chunks`, and in the chunk that
// runs `id`, `command` and `outputFile`; `id`, `assetsUrl` and `mergeCommand` when present).

/** One chunk of a render job: a contiguous range of frames and the command that renders it. */
export interface RenderJobChunk {
  /** `run(jobPath, chunkId)` runs the first chunk whose `id` equals `chunkId`. */
  id: number
  /** The first frame this chunk renders. */
  startFrame?: number
  /** How many frames this chunk renders. */
  frameCount?: number
  /** Where the command writes its output, relative to the run's working directory (or a URL
   * the command uploads to); named in the result as `outputPath`/`outputBytes`. */
  outputFile?: string
  /** The command to run, split into argv without a shell (see `parseCommand`). */
  command: string
}

/** What the render is: frame count, rate and size. */
export interface JobMetadata {
  totalFrames: number
  fps: number
  width: number
  height: number
  duration: number
}

/** A distributed render job. */
export interface JobSpec {
  /** The job's id, passed to `storage.downloadAssetBundle` as it is; names the job's directory
   * with `perJobWorkspace`. */
  id?: string
  /** When non-empty, the asset bundle to download into the workspace before the command runs. */
  assetsUrl?: string
  metadata?: JobMetadata
  chunks: RenderJobChunk[]
  /** The command `merge` runs once every chunk has succeeded. */
  mergeCommand?: string
}
