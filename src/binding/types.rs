//! The shapes that cross the boundary, checked by the JavaScript entry first (README, "Design").

use std::collections::HashMap;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

/// An output callback, weak (it never keeps Node alive); `''` is a barrier the entry drops.
pub type OutputFn = ThreadsafeFunction<String, (), String, Status, false, true>;

/// The adapter as the JavaScript entry wraps it: a promise, `jobId` parsed, `runId` a `signal`.
pub type DownloadArgs = FnArgs<(Option<String>, String, String, u32)>;
pub type DownloadFn =
    ThreadsafeFunction<DownloadArgs, Promise<()>, DownloadArgs, Status, false, true>;

/// Configuration of a `WorkerRuntime`. `timeout`, `killSignal`, `killGracePeriod`, `maxBuffer`,
/// `env`, `onStdout`, `onStderr` and `lines` are defaults for the `RunOptions` of the same name.
#[napi(object, object_to_js = false)]
pub struct WorkerRuntimeConfig {
    /// The directory commands run in, created if missing; a relative path is resolved right away.
    pub workspace_dir: String,
    /// The storage adapter that downloads a job's `assetsUrl` bundle into the workspace.
    pub storage: Option<ArtifactStorage>,
    /// Each run works in `<workspaceDir>/<job id>` (made safe for a file name), where the job's
    /// assets are downloaded once for every runtime and process. Default `false`: `workspaceDir`.
    pub per_job_workspace: Option<bool>,
    /// How specs are fetched: retries, timeouts, size limit, headers, CA certificates.
    pub fetch: Option<FetchOptions>,
    // Declared for the types; the JavaScript entry lays these under each run's own options.
    pub timeout: Option<f64>,
    #[napi(ts_type = "NodeJS.Signals | number")]
    pub kill_signal: Option<i32>,
    pub kill_grace_period: Option<f64>,
    pub max_buffer: Option<f64>,
    #[napi(ts_type = "Record<string, string | number | boolean | null | undefined>")]
    pub env: Option<HashMap<String, Option<String>>>,
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stdout: Option<OutputFn>,
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stderr: Option<OutputFn>,
    pub lines: Option<bool>,
}

/// The infrastructure package's storage adapter. Only `downloadAssetBundle` is called, as a
/// method (`this` is the adapter), its result awaited as `await` would: a promise or a value.
#[napi(object, object_to_js = false)]
pub struct ArtifactStorage {
    /// Download the bundle at `remoteUrl` for job `jobId` (the spec's `id`, as the JSON value it
    /// is) into `targetDir`. `options.signal` aborts when the run is aborted, times out or ends.
    #[napi(
        ts_type = "(jobId: string, remoteUrl: string, targetDir: string, options: { signal: AbortSignal }) => Promise<void> | void"
    )]
    pub download_asset_bundle: DownloadFn,
}

/// Controls for one run; each overrides the runtime's default of the same name.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Milliseconds the process may run; then its group gets `killSignal`, SIGKILL after
    /// `killGracePeriod`, and the run resolves with `timedOut: true`. 0 (default): no timeout.
    pub timeout: Option<f64>,
    /// The signal sent when the timeout expires: a name such as `'SIGTERM'` (default) or a number.
    #[napi(ts_type = "NodeJS.Signals | number")]
    pub kill_signal: Option<i32>,
    /// Milliseconds between `killSignal` and SIGKILL. Default 5000.
    pub kill_grace_period: Option<f64>,
    /// Bytes of stdout and of stderr to keep (the most recent ones). Default 16 MiB. The
    /// process is never killed for writing more; `stdoutTruncated`/`stderrTruncated` say so.
    pub max_buffer: Option<f64>,
    /// Variables laid over the inherited environment. `null` removes an inherited variable.
    #[napi(ts_type = "Record<string, string | number | boolean | null | undefined>")]
    pub env: Option<HashMap<String, Option<String>>>,
    /// Set by the JavaScript entry: `process.env` when `run` was called, as `KEY=value\0` pairs.
    #[napi(skip_typescript)]
    pub inherited_env: Option<String>,
    /// Set by the JavaScript entry: `process.cwd()` when `run` was called.
    #[napi(skip_typescript)]
    pub cwd: Option<String>,
    /// Set by the JavaScript entry: milliseconds the run was held back after `run` was called.
    #[napi(skip_typescript)]
    pub held_ms: Option<f64>,
    /// Aborting it kills the run's process group (or stops its spec fetch or storage call) and
    /// rejects the run with an `AbortError` (`code: 'ABORT_ERR'`, `cause`: the signal's reason).
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Unknown<'a>>,
    /// Called with each piece of stdout as it arrives, decoded as UTF-8 (a character is never
    /// split between calls). Every call is made before `run` settles. A callback that throws
    /// is not called again for the run, which still resolves; the error becomes a process warning.
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stdout: Option<OutputFn>,
    /// Like `onStdout`, for stderr.
    #[napi(ts_type = "(chunk: string) => void")]
    pub on_stderr: Option<OutputFn>,
    /// `onStdout`/`onStderr` receive whole lines, without their newline (`\n` or `\r\n`); a
    /// last line without one comes at the end, one longer than `maxBuffer` (at least 1 MiB) in
    /// pieces. Default `false`: pieces as they arrive.
    pub lines: Option<bool>,
    #[napi(skip_typescript)]
    pub run_id: u32,
}

/// How job specs are fetched over HTTP(S), and how large a spec may be.
#[napi(object, object_to_js = false)]
pub struct FetchOptions {
    /// Retries after a transient failure: connection refused or reset, a timeout, HTTP 408,
    /// 429, 500, 502, 503 or 504. Other 4xx answers are never retried. Default 3.
    pub retries: Option<u32>,
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
    /// file; enforced while reading. Default 64 MiB; `Infinity` means no limit.
    pub max_spec_bytes: Option<f64>,
    /// Extra request headers, e.g. `{ Authorization: 'Bearer …' }` for a private orchestrator.
    pub headers: Option<HashMap<String, String>>,
    /// Extra CA certificates (PEM) trusted on top of the system's, for private clusters.
    #[napi(ts_type = "string | string[]")]
    pub ca_certificates: Option<Vec<String>>,
    /// Set by the JavaScript entry from the environment when the runtime is created.
    #[napi(skip_typescript)]
    pub http_proxy: Option<String>,
    #[napi(skip_typescript)]
    pub https_proxy: Option<String>,
    #[napi(skip_typescript)]
    pub no_proxy: Option<String>,
    /// `NODE_EXTRA_CA_CERTS`, when the JavaScript entry could read that file.
    #[napi(skip_typescript)]
    pub extra_ca_file: Option<String>,
}

/// What a run of one chunk produced.
#[napi(object, object_from_js = false)]
pub struct WorkerResult {
    /// The process's exit code; -1 when it was ended by a signal (or by the timeout).
    pub exit_code: i32,
    /// Everything the process wrote to stdout (its most recent `maxBuffer` bytes), as UTF-8.
    pub stdout: String,
    /// Everything the process wrote to stderr (its most recent `maxBuffer` bytes), as UTF-8.
    pub stderr: String,
    /// Milliseconds from just before the process was spawned to its exit.
    pub duration_ms: f64,
    /// The signal that ended the process, e.g. `'SIGKILL'`; absent when it exited by itself.
    pub signal: Option<String>,
    /// `true` when the run's `timeout` ended the process; absent otherwise.
    pub timed_out: Option<bool>,
    /// `true` when stdout was longer than `maxBuffer` and its oldest bytes were dropped.
    pub stdout_truncated: Option<bool>,
    /// `true` when stderr was longer than `maxBuffer` and its oldest bytes were dropped.
    pub stderr_truncated: Option<bool>,
    /// Peak resident set size of the process, in bytes, as `wait4` reports it.
    pub max_rss_bytes: Option<f64>,
    /// CPU time the process spent in user mode, in milliseconds.
    pub cpu_user_ms: Option<f64>,
    /// CPU time the process spent in the kernel, in milliseconds.
    pub cpu_system_ms: Option<f64>,
    /// The chunk's `outputFile`, absolute, when it names a local file that exists after the run.
    pub output_path: Option<String>,
    /// The size of that file in bytes.
    pub output_bytes: Option<f64>,
}

/// A command string split into a program and its arguments.
#[napi(object, object_from_js = false)]
pub struct ParsedCommand {
    /// The program to start: a name looked up in `PATH`, or a path.
    pub command: String,
    /// The arguments, quotes and escapes removed.
    pub args: Vec<String>,
}
