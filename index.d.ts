/* The public surface: the declarations generated from the Rust definitions (binding.d.ts),
 * without the generated loader's own internals. */
export { WorkerRuntime, parseCommand, quoteCommand } from './binding.js'
export type {
  ArtifactStorage,
  FetchOptions,
  JobMetadata,
  JobSpec,
  ParsedCommand,
  RenderJobChunk,
  RunOptions,
  WorkerResult,
  WorkerRuntimeConfig,
} from './binding.js'
