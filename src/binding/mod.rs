mod bridge;
mod environ;
mod errors;
#[cfg(all(unix, not(feature = "portable-process")))]
mod local;
mod types;
#[cfg(all(unix, not(feature = "portable-process")))]
mod uv;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::fetch::FetchConfig;
use crate::job::Target;
use crate::lock;
use crate::process::{limit, millis, Controls, Outcome, Signal};
use crate::runs::Runs;
use crate::runtime::{self, AssetStore, RunExtras, Runtime};
use crate::source::JobSource;
use bridge::{JsOutput, RunStorage};
pub use types::*;

/// Runs a chunk of a Helios render job: fetches the spec, has the storage adapter download its
/// assets, runs the chunk's command. One instance serves any number of concurrent runs.
#[napi]
pub struct WorkerRuntime {
    inner: Arc<Runtime>,
    download: Option<Arc<DownloadFn>>,
    runs: Arc<Runs>,
    serial: u32,
}

#[napi]
impl WorkerRuntime {
    /// Create a runtime; a `TypeError` (`code: 'ERR_INVALID_ARG_TYPE'`, …) for a bad config: no
    /// `workspaceDir`, a `storage` without a `downloadAssetBundle` function, a bad default option.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, config: WorkerRuntimeConfig) -> Result<Self> {
        let fail = |e: Error| errors::to_napi(&env, e);
        // Resolved now, so that a later process.chdir() does not move the workspace.
        let workspace = current_dir().map_err(fail)?.join(&config.workspace_dir);
        let fetch = fetch_config(config.fetch).map_err(fail)?;
        #[cfg(all(unix, not(feature = "portable-process")))]
        local::get(&env);
        Ok(WorkerRuntime {
            inner: Arc::new(Runtime {
                workspace,
                fetch,
                per_job: config.per_job_workspace.unwrap_or(false),
            }),
            download: config.storage.map(|s| Arc::new(s.download_asset_bundle)),
            runs: env_runs(&env)?,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Run chunk `chunkId` of the spec at `jobPath` (an http(s) URL, a `file://` URL or a path);
    /// resolves once the process has exited and its output is drained, even on a non-zero exit.
    /// Anything else, bad arguments included (before anything runs), rejects with an `Error`
    /// whose `code` says what went wrong.
    #[napi(
        catch_unwind,
        ts_args_type = "jobPath: string, chunkId: number, options?: RunOptions | undefined | null",
        ts_return_type = "Promise<WorkerResult>"
    )]
    pub fn run<'env>(
        &self,
        env: &'env Env,
        job_path: String,
        chunk_id: i64,
        options: Option<RunOptions>,
    ) -> Result<PromiseRaw<'env, WorkerResult>> {
        self.start(env, job_path, Target::Chunk(chunk_id), options)
    }

    /// Run the spec's `mergeCommand` as `run` runs a chunk's, once every chunk has succeeded.
    #[napi(
        catch_unwind,
        ts_args_type = "jobPath: string, options?: RunOptions | undefined | null",
        ts_return_type = "Promise<WorkerResult>"
    )]
    pub fn merge<'env>(
        &self,
        env: &'env Env,
        job_path: String,
        options: Option<RunOptions>,
    ) -> Result<PromiseRaw<'env, WorkerResult>> {
        self.start(env, job_path, Target::Merge, options)
    }

    /// Whether `run`, when the entry passes no environment, reads this process's under Node's
    /// lock (see `environ`), as `process.env` shows it.
    #[napi(skip_typescript)]
    pub fn reads_environment() -> bool {
        environ::readable()
    }

    /// The environment as `run` reads it, as `KEY=value\0` pairs, for a run handed over later.
    #[napi(skip_typescript)]
    pub fn environment_pairs() -> String {
        let env = environ::locked(|| runtime::environment(None, std::iter::empty()));
        // Without `format!` and `display`: a held run's copy is taken on the JavaScript thread.
        let mut pairs = String::with_capacity(4096);
        for (k, v) in &env {
            pairs.extend([&*k.to_string_lossy(), "=", &v.to_string_lossy(), "\0"]);
        }
        pairs
    }

    #[napi(skip_typescript)]
    pub fn cancel(&self, run_id: u32) {
        self.runs.cancel(self.key(run_id));
    }

    /// Signal run `runId`'s process group, giving it `graceMs` (see `Group::signal`).
    #[napi(skip_typescript, catch_unwind)]
    pub fn signal(&self, run_id: u32, signal: i32, grace_ms: f64) -> bool {
        let grace = millis(grace_ms).unwrap_or_default();
        self.runs.signal(self.key(run_id), Signal(signal), grace)
    }

    /// The absolute path of the workspace every command runs in.
    #[napi(getter)]
    pub fn workspace_dir(&self) -> String {
        self.inner.workspace.display().to_string()
    }
}

impl WorkerRuntime {
    fn start<'env>(
        &self,
        env: &'env Env,
        job_path: String,
        target: Target,
        options: Option<RunOptions>,
    ) -> Result<PromiseRaw<'env, WorkerResult>> {
        let options = options.unwrap_or_default();
        let cwd = options.cwd.as_deref().map(std::path::PathBuf::from);
        let source = cwd
            .map_or_else(current_dir, Ok)
            .and_then(|cwd| JobSource::parse(&job_path, &cwd));
        let defaults = Controls::default();
        let grace = |ms| millis(ms).unwrap_or(Duration::MAX);
        let controls = Controls {
            timeout: options.timeout.and_then(limit),
            kill_signal: options.kill_signal.map_or(defaults.kill_signal, Signal),
            kill_grace: options.kill_grace_period.map_or(defaults.kill_grace, grace),
            // `as` saturates: Infinity keeps everything.
            max_buffer: options
                .max_buffer
                .map_or(defaults.max_buffer, |b| b as usize),
            // Taken now, on the JavaScript thread (see `runtime::environment`).
            env: Some(match options.inherited_env.as_deref() {
                Some(pairs) => runtime::environment(Some(pairs), options.env.iter().flatten()),
                None => {
                    environ::locked(|| runtime::environment(None, options.env.iter().flatten()))
                }
            }),
        };
        let streams = [options.on_stdout, options.on_stderr].map(|f| f.map(Arc::new));
        let run_id = options.run_id;
        let extras = RunExtras {
            storage: self
                .download
                .clone()
                .map(|download| Arc::new(RunStorage { download, run_id }) as Arc<dyn AssetStore>),
            sink: streams.iter().any(Option::is_some).then(|| {
                Arc::new(JsOutput {
                    streams,
                    queued: Arc::default(),
                }) as _
            }),
            cancel: CancellationToken::new(),
            group: Arc::default(),
            asked: (options.held_ms.and_then(millis)).and_then(|d| Instant::now().checked_sub(d)),
        };
        #[cfg(all(unix, not(feature = "portable-process")))]
        let alone = self.runs.is_empty();
        let registered = self
            .runs
            .register(self.key(run_id), &extras.cancel, &extras.group);
        // One run at a time on the JavaScript thread (`alone`: no other of the environment's is
        // on, either path): others (100 at once) go to tokio's workers, where loading, spawning
        // and reading take none of its time; so does one whose spec is not a local file read at
        // once (HTTP; a FIFO whose writer may be that very thread, blocked in `writeFileSync`).
        #[cfg(all(unix, not(feature = "portable-process")))]
        let local = (alone && source.as_ref().is_ok_and(JobSource::reads_at_once))
            .then(|| local::get(env))
            .flatten();
        let inner = self.inner.clone();
        let work = async move {
            let _registered = registered;
            async { inner.run(source?, target, controls, extras).await }.await
        };
        let settle = |env: &Env, outcome| match outcome {
            Ok(outcome) => Ok(WorkerResult::from(outcome)),
            Err(err) => Err(errors::to_napi(env, err)),
        };
        #[cfg(all(unix, not(feature = "portable-process")))]
        if let Some(local) = local {
            let raw = env.raw();
            return local.spawn(env, async move { settle(&Env::from_raw(raw), work.await) });
        }
        env.spawn_future_with_callback(async move { Ok(work.await) }, move |env, outcome| {
            settle(env, outcome)
        })
    }

    fn key(&self, run_id: u32) -> u64 {
        (u64::from(self.serial) << 32) | u64::from(run_id)
    }
}

static NEXT_SERIAL: AtomicU32 = AtomicU32::new(0);

/// The runs of `env`, all cancelled (groups killed) when it goes away: a worker ends, Node exits.
fn env_runs(env: &Env) -> Result<Arc<Runs>> {
    static BY_ENV: LazyLock<Mutex<HashMap<usize, Arc<Runs>>>> = LazyLock::new(Mutex::default);
    let key = env.raw() as usize;
    let mut by_env = lock(&BY_ENV);
    if let Some(runs) = by_env.get(&key) {
        return Ok(runs.clone());
    }
    let runs = Arc::new(Runs::default());
    env.add_env_cleanup_hook(key, |key| {
        if let Some(runs) = lock(&BY_ENV).remove(&key) {
            runs.cancel_all();
        }
    })?;
    by_env.insert(key, runs.clone());
    Ok(runs)
}

fn current_dir() -> std::result::Result<std::path::PathBuf, Error> {
    std::env::current_dir().map_err(|e| Error::io(&e, "uv_cwd", "."))
}

fn fetch_config(options: Option<FetchOptions>) -> std::result::Result<FetchConfig, Error> {
    let mut fetch = FetchConfig::default();
    let Some(o) = options else { return Ok(fetch) };
    fetch.retries = o.retries.unwrap_or(fetch.retries);
    fetch.retry_base = o.retry_base_ms.and_then(millis).unwrap_or(fetch.retry_base);
    fetch.retry_max = o.retry_max_ms.and_then(millis).unwrap_or(fetch.retry_max);
    let connection = &mut fetch.connection;
    connection.connect_timeout = o
        .connect_timeout_ms
        .map_or(connection.connect_timeout, limit);
    connection.http_proxy = o.http_proxy;
    connection.https_proxy = o.https_proxy;
    connection.no_proxy = o.no_proxy;
    connection.extra_ca_file = o.extra_ca_file;
    fetch.timeout = o.timeout_ms.map_or(fetch.timeout, limit);
    fetch.idle_timeout = o.idle_timeout_ms.map_or(fetch.idle_timeout, limit);
    // `as` saturates: Infinity is no limit.
    fetch.max_spec_bytes = o.max_spec_bytes.map_or(fetch.max_spec_bytes, |b| b as u64);
    for (name, value) in o.headers.unwrap_or_default() {
        fetch.add_header(&name, &value).map_err(|why| {
            Error::InvalidArgument(format!("The property 'config.fetch.headers.{name}' {why}"))
        })?;
    }
    for (i, pem) in o.ca_certificates.unwrap_or_default().iter().enumerate() {
        let certificates = crate::clients::parse_pem(pem).map_err(|why| {
            Error::InvalidArgument(format!(
                "The property 'config.fetch.caCertificates[{i}]' is not a PEM certificate: {why}"
            ))
        })?;
        fetch.connection.ca_certificates.extend(certificates);
    }
    Ok(fetch)
}

impl From<Outcome> for WorkerResult {
    fn from(o: Outcome) -> Self {
        WorkerResult {
            exit_code: o.exit_code,
            stdout: o.stdout,
            stderr: o.stderr,
            duration_ms: o.duration.as_secs_f64() * 1000.0,
            signal: o.signal.map(|s| s.name()),
            timed_out: o.timed_out.then_some(true),
            stdout_truncated: o.stdout_truncated.then_some(true),
            stderr_truncated: o.stderr_truncated.then_some(true),
            max_rss_bytes: o.usage.map(|u| u.max_rss_bytes as f64),
            cpu_user_ms: o.usage.map(|u| u.user_ms),
            cpu_system_ms: o.usage.map(|u| u.system_ms),
            output_path: o.output_path.map(|p| p.display().to_string()),
            output_bytes: o.output_bytes.map(|b| b as f64),
        }
    }
}

/// Split a command string into a program and its arguments as `run` does, to check a command
/// before shipping a spec. Throws an `Error` with `code: 'ERR_INVALID_COMMAND'` for an empty
/// command, an unterminated quote, a trailing backslash or a NUL byte.
#[napi(catch_unwind)]
pub fn parse_command(env: Env, command: String) -> Result<ParsedCommand> {
    let parsed = crate::command::parse_command(&command)
        .map_err(|e| errors::to_napi(&env, Error::InvalidCommand(e)))?;
    Ok(ParsedCommand {
        command: parsed.program,
        args: parsed.args,
    })
}

/// Join a program and its arguments into a command string that `parseCommand` and `run` split
/// back into exactly them, so that a file name with spaces or quotes survives. Throws
/// `ERR_INVALID_COMMAND` for an empty program or a NUL byte, a `TypeError` for non-strings.
#[napi(catch_unwind)]
pub fn quote_command(env: Env, program: String, args: Option<Vec<String>>) -> Result<String> {
    crate::command::quote_command(&program, &args.unwrap_or_default())
        .map_err(|e| errors::to_napi(&env, Error::InvalidCommand(e)))
}
