//! Interfaces that exist for TypeScript callers only: napi copies them, with these docs, into
//! `index.d.ts`. The runtime reads these values itself (see `binding`), so no conversion
//! code is generated for them.
#![allow(dead_code)]

use napi_derive::napi;

/// One chunk of a render job: a contiguous range of frames and the command that renders it.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RenderJobChunk {
    /// The chunk's id; `run(jobPath, chunkId)` runs the first chunk whose `id` equals `chunkId`.
    pub id: f64,
    /// The first frame this chunk renders.
    pub start_frame: f64,
    /// How many frames this chunk renders.
    pub frame_count: f64,
    /// Where the chunk's command writes its output, relative to the workspace.
    pub output_file: String,
    /// The command to run, split into argv without a shell (see `parseCommand`).
    pub command: String,
}

/// What the render is: frame count, rate and size.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct JobMetadata {
    pub total_frames: f64,
    pub fps: f64,
    pub width: f64,
    pub height: f64,
    pub duration: f64,
}

/// A distributed render job. Only `chunks` (and, in the chunk that runs, `id` and `command`)
/// is required by `run`; the other fields are read when present.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct JobSpec {
    /// The job's id, passed to `storage.downloadAssetBundle`.
    pub id: String,
    /// When non-empty, the asset bundle to download into the workspace before the command runs.
    pub assets_url: Option<String>,
    pub metadata: JobMetadata,
    pub chunks: Vec<RenderJobChunk>,
    /// The command that merges the chunks' outputs once every chunk has run.
    pub merge_command: String,
}

/// The storage adapter of the infrastructure package. The runtime only calls
/// `downloadAssetBundle`, as a method of this object, and awaits it.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ArtifactStorage {
    /// Download the bundle at `remoteUrl` for job `jobId` into `targetDir` (the workspace).
    #[napi(ts_type = "(jobId: string, remoteUrl: string, targetDir: string) => Promise<void>")]
    pub download_asset_bundle: String,
}

/// Controls for one run; each overrides the runtime's default of the same name.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RunOptions {
    /// Milliseconds the process may run. Past it, its process group gets `killSignal`, then
    /// SIGKILL after `killGracePeriod`, and the run resolves with `timedOut: true`.
    /// 0 (the default) means no timeout.
    pub timeout: Option<f64>,
    /// The signal sent when the timeout expires: a name such as `'SIGTERM'` (the default) or a number.
    #[napi(ts_type = "string | number")]
    pub kill_signal: Option<String>,
    /// Milliseconds between `killSignal` and SIGKILL. Default 5000.
    pub kill_grace_period: Option<f64>,
    /// Bytes of stdout and of stderr to keep (the most recent ones). Default 16 MiB. The
    /// process is never killed for writing more; `stdoutTruncated`/`stderrTruncated` say so.
    pub max_buffer: Option<f64>,
    /// Variables laid over the inherited environment. `null` removes an inherited variable.
    #[napi(ts_type = "Record<string, string | number | boolean | null | undefined>")]
    pub env: Option<String>,
    /// Aborting it kills the run's process group (or stops the spec fetch or storage call in
    /// progress) and rejects the run with an `AbortError` (`code: 'ABORT_ERR'`, `cause` the
    /// signal's reason).
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<String>,
    /// Called with each piece of stdout as it arrives, decoded as UTF-8 (a character is never
    /// split between calls). Every call is made before `run` settles. A callback that throws
    /// is not called again for the run, which still resolves; the error becomes a process warning.
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stdout: Option<String>,
    /// Like `onStdout`, for stderr.
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stderr: Option<String>,
}

/// How job specs are fetched over HTTP(S), and how large a spec may be.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct FetchOptions {
    /// Retries after a transient failure: connection refused or reset, a timeout, HTTP 408,
    /// 429, 500, 502, 503 or 504. Other 4xx answers are never retried. Default 3.
    pub retries: Option<f64>,
    /// The first backoff in ms; each later one doubles, with full jitter. Default 200.
    pub retry_base_ms: Option<f64>,
    /// The longest backoff, and the longest `Retry-After` (429/503) honoured, in ms. Default 5000.
    pub retry_max_ms: Option<f64>,
    /// How long one connection attempt may take, in ms. Default 10000; 0 means no limit.
    pub connect_timeout_ms: Option<f64>,
    /// How long one attempt may take, body included, in ms. Default 60000; 0 means no limit.
    pub timeout_ms: Option<f64>,
    /// How long the body may stall between two pieces, in ms. Default 30000; 0 means no limit.
    pub idle_timeout_ms: Option<f64>,
    /// The largest spec accepted, in bytes, from the network (after decompression) or from a
    /// file; enforced while reading. Default 64 MiB.
    pub max_spec_bytes: Option<f64>,
    /// Extra request headers, e.g. `{ Authorization: 'Bearer …' }` for a private orchestrator.
    #[napi(ts_type = "Record<string, string>")]
    pub headers: Option<String>,
    /// Extra CA certificates (PEM) trusted on top of the system's, for private clusters.
    #[napi(ts_type = "string | string[]")]
    pub ca_certificates: Option<String>,
}

/// Configuration of a `WorkerRuntime`, plus the default run controls.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WorkerRuntimeConfig {
    /// The directory every command runs in, created (recursively) when missing. A relative
    /// path is resolved against the current directory when the runtime is created.
    pub workspace_dir: String,
    /// The storage adapter that downloads a job's `assetsUrl` bundle.
    #[napi(ts_type = "ArtifactStorage")]
    pub storage: Option<String>,
    /// How specs are fetched: retries, timeouts, size limit, headers, CA certificates.
    #[napi(ts_type = "FetchOptions")]
    pub fetch: Option<String>,
    /// Default `RunOptions.timeout`.
    pub timeout: Option<f64>,
    /// Default `RunOptions.killSignal`.
    #[napi(ts_type = "string | number")]
    pub kill_signal: Option<String>,
    /// Default `RunOptions.killGracePeriod`.
    pub kill_grace_period: Option<f64>,
    /// Default `RunOptions.maxBuffer`.
    pub max_buffer: Option<f64>,
    /// Default `RunOptions.env`.
    #[napi(ts_type = "Record<string, string | number | boolean | null | undefined>")]
    pub env: Option<String>,
    /// Default `RunOptions.onStdout`.
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stdout: Option<String>,
    /// Default `RunOptions.onStderr`.
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stderr: Option<String>,
}
