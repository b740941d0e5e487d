#![deny(clippy::all)]
//! The native `WorkerRuntime` of the Helios distributed video renderer.
//!
//! This file is the whole JavaScript surface. Every module but `binding` and `typings` is
//! free of napi and tested with `cargo test`; the binding only converts values and errors.

pub mod cancel;
pub mod command;
pub mod diagnostics;
pub mod error;
pub mod fetch;
#[cfg(unix)]
pub mod orphans;
pub mod process;
pub mod runtime;
pub mod source;
pub mod spec;

mod binding;
mod typings;

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use binding::{errors, options, values, AbortHook, JsOutput, JsStorage};
use cancel::CancelToken;
use error::Error;
use process::{Controls, Outcome};
use runtime::{RunExtras, Runtime};
use source::JobSource;

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
        }
    }
}

/// A command string split into a program and its arguments.
#[napi(object, object_from_js = false, js_name = "ParsedCommand")]
pub struct JsParsedCommand {
    /// The program to start: a name looked up in `PATH`, or a path.
    pub command: String,
    /// The arguments, quotes and escapes removed.
    pub args: Vec<String>,
}

/// Runs one chunk of a Helios render job: fetches the job spec, downloads its assets through
/// the storage adapter, and runs the chunk's command in the workspace.
///
/// One instance serves any number of concurrent `run` calls.
#[napi]
pub struct WorkerRuntime {
    inner: Arc<Runtime>,
    defaults: Controls,
    /// Default `onStdout` / `onStderr`, used by runs whose options give none.
    default_hooks: [Option<FunctionRef<String, Unknown<'static>>>; 2],
}

const HOOK_NAMES: [&str; 2] = ["onStdout", "onStderr"];

#[napi]
impl WorkerRuntime {
    /// Create a runtime. Throws a `TypeError` (`code: 'ERR_INVALID_ARG_TYPE'`, …) for a bad
    /// config: a missing `workspaceDir`, a `storage` without a `downloadAssetBundle` function,
    /// an invalid default option.
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "config: WorkerRuntimeConfig"
    )]
    pub fn new(env: Env, config: Unknown) -> Result<Self> {
        Self::from_config(&config).map_err(|e| errors::to_napi(&env, e, None))
    }

    /// Run chunk `chunkId` of the job spec at `jobPath` (an http(s) URL, a `file://` URL, or a
    /// file path) and resolve with its result once the process has exited and its output is
    /// drained. A non-zero exit resolves; every failure to get that far rejects with an `Error`
    /// whose `code` says what went wrong. Bad arguments reject too, before anything runs.
    #[napi(
        catch_unwind,
        ts_args_type = "jobPath: string, chunkId: number, options?: RunOptions",
        ts_return_type = "Promise<WorkerResult>"
    )]
    pub fn run<'env>(
        &self,
        env: &'env Env,
        job_path: Unknown,
        chunk_id: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, WorkerResult>> {
        let (request, hook) = match self.request(env, &job_path, &chunk_id, options.as_ref()) {
            Ok((request, hook)) => (Ok(request), hook),
            Err(e) => (Err(e), None),
        };
        let inner = self.inner.clone();
        let work = async move {
            let (source, chunk_id, controls, extras) = request?;
            runtime::contain_panics(
                async move { inner.run(source, chunk_id, controls, extras).await },
            )
            .await
        };
        env.spawn_future_with_callback(async move { Ok(work.await) }, move |env, outcome| {
            let aborted = matches!(outcome, Err(Error::Aborted));
            let reason = hook.and_then(|hook| hook.detach(env, aborted));
            match outcome {
                Ok(outcome) => Ok(WorkerResult::from(outcome)),
                Err(err) => Err(errors::to_napi(env, err, reason)),
            }
        })
    }

    /// The absolute path of the workspace every command runs in.
    #[napi(getter)]
    pub fn workspace_dir(&self) -> String {
        self.inner.workspace().display().to_string()
    }
}

type Request = (JobSource, i64, Controls, RunExtras);

impl WorkerRuntime {
    fn from_config(config: &Unknown) -> std::result::Result<Self, Error> {
        let obj = values::object(config, "config")?;
        let dir = values::property(&obj, "workspaceDir")?;
        let dir = values::string(&dir, "config.workspaceDir")?;
        if dir.is_empty() || dir.contains('\0') {
            return Err(values::invalid_value(
                "config.workspaceDir",
                "must be a non-empty path without NUL bytes",
                &values::property(&obj, "workspaceDir")?,
            ));
        }
        // Resolved now, so that a later process.chdir() does not move the workspace.
        let workspace = current_dir()?.join(dir);
        let storage = JsStorage::from_js(&values::property(&obj, "storage")?)?;
        let defaults = options::controls(&obj, "config", &Controls::default())?;
        let mut default_hooks = [None, None];
        for (slot, name) in default_hooks.iter_mut().zip(HOOK_NAMES) {
            let hook = values::property(&obj, name)?;
            if values::is_absent(&hook) {
                continue;
            }
            if !values::is_function(&hook) {
                return Err(values::wrong_type(
                    &format!("config.{name}"),
                    "of type function",
                    &hook,
                ));
            }
            let hook: Function<String, Unknown<'static>> =
                unsafe { hook.cast() }.map_err(|e| Error::Internal(e.to_string()))?;
            *slot = Some(
                hook.create_ref()
                    .map_err(|e| Error::Internal(e.to_string()))?,
            );
        }
        let storage = storage.map(|s| Arc::new(s) as Arc<dyn runtime::AssetStore>);
        let inner = Runtime::new(workspace, storage, options::fetch(&obj)?);
        Ok(WorkerRuntime {
            inner: Arc::new(inner),
            defaults,
            default_hooks,
        })
    }

    /// Check every argument on the JS thread, before anything runs. The abort listener is
    /// attached last, once nothing else can fail.
    fn request(
        &self,
        env: &Env,
        job_path: &Unknown,
        chunk_id: &Unknown,
        options: Option<&Unknown>,
    ) -> std::result::Result<(Request, Option<AbortHook>), Error> {
        let path = values::string(job_path, "jobPath")?;
        if path.is_empty() {
            return Err(values::wrong_type(
                "jobPath",
                "a non-empty string",
                job_path,
            ));
        }
        if path.contains('\0') {
            return Err(values::invalid_value(
                "jobPath",
                "must not contain NUL bytes",
                job_path,
            ));
        }
        let id = values::number(chunk_id, "chunkId")?;
        const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
        if id.fract() != 0.0 || !id.is_finite() || id.abs() > MAX_SAFE {
            return Err(values::out_of_range("chunkId", "a safe integer", chunk_id));
        }
        let options = match options.filter(|o| !values::is_absent(o)) {
            Some(options) => Some(values::object(options, "options")?),
            None => None,
        };
        let controls = match &options {
            Some(obj) => options::controls(obj, "options", &self.defaults)?,
            None => self.defaults.clone(),
        };
        let mut hooks = Vec::with_capacity(2);
        for (default, name) in self.default_hooks.iter().zip(HOOK_NAMES) {
            let given = match &options {
                Some(obj) => values::property(obj, name)?,
                None => ().into_unknown(env).map_err(|e| Error::Internal(e.to_string()))?,
            };
            let hook = match default {
                Some(default) if values::is_absent(&given) => default
                    .borrow_back(env)
                    .map(|f| f.to_unknown())
                    .map_err(|e| Error::Internal(e.to_string()))?,
                _ => given,
            };
            hooks.push(hook);
        }
        let sink = JsOutput::from_js(env, &hooks[0], &hooks[1], "options")?;
        let source = JobSource::parse(&path, &current_dir()?)?;
        let mut extras = RunExtras {
            sink: sink.map(|s| Arc::new(s) as Arc<dyn process::OutputSink>),
            cancel: None,
        };
        let mut hook = None;
        if let Some(obj) = &options {
            let signal = values::property(obj, "signal")?;
            if !values::is_absent(&signal) {
                let token = CancelToken::new();
                hook = Some(AbortHook::attach(env, &signal, &token)?);
                extras.cancel = Some(token);
            }
        }
        Ok(((source, id as i64, controls, extras), hook))
    }
}

fn current_dir() -> std::result::Result<std::path::PathBuf, Error> {
    std::env::current_dir().map_err(|e| Error::io(&e, "uv_cwd", "."))
}

/// Split a command string into a program and its arguments exactly as `run` does, without
/// running anything: use it to check a command before shipping a spec. Throws an `Error`
/// with `code: 'ERR_INVALID_COMMAND'` for an empty command, an unterminated quote, a
/// trailing backslash or a NUL byte.
#[napi(catch_unwind, ts_args_type = "command: string")]
pub fn parse_command(env: Env, command: Unknown) -> Result<JsParsedCommand> {
    let parsed = values::string(&command, "command")
        .and_then(|text| Ok(command::parse_command(&text)?))
        .map_err(|e| errors::to_napi(&env, e, None))?;
    Ok(JsParsedCommand {
        command: parsed.program,
        args: parsed.args,
    })
}

/// Time one tokio spawn-and-wait of `program` (no arguments, output piped), in milliseconds:
/// the floor every run pays on this machine, measured through the same bridge `run` uses.
#[napi(namespace = "diagnostics")]
pub async fn spawn_and_wait(program: String) -> Result<f64> {
    diagnostics::spawn_and_wait(&program)
        .await
        .map(|d| d.as_secs_f64() * 1000.0)
        .map_err(|e| napi::Error::from_reason(format!("spawn {program}: {e}")))
}

/// Time one GET of `url` over a kept-alive connection, body read, in milliseconds.
#[napi(namespace = "diagnostics")]
pub async fn keep_alive_get(url: String) -> Result<f64> {
    diagnostics::keep_alive_get(&url)
        .await
        .map(|d| d.as_secs_f64() * 1000.0)
        .map_err(|e| napi::Error::from_reason(format!("GET {url}: {e}")))
}

/// Join a program and its arguments into a command string that `parseCommand` (and `run`)
/// split back into exactly them — for orchestrators that build specs from argv, so that a
/// file name with spaces or quotes survives. Throws `ERR_INVALID_COMMAND` for an empty
/// program or a NUL byte, a `TypeError` for anything but strings.
#[napi(catch_unwind, ts_args_type = "program: string, args?: string[]")]
pub fn quote_command(env: Env, program: Unknown, args: Option<Unknown>) -> Result<String> {
    let quoted = || -> std::result::Result<String, Error> {
        let program = values::string(&program, "program")?;
        let mut words = Vec::new();
        if let Some(args) = args.filter(|a| !values::is_absent(a)) {
            if !args.is_array().unwrap_or(false) {
                return Err(values::wrong_type("args", "an array of strings", &args));
            }
            let list: Vec<Unknown> =
                unsafe { args.cast() }.map_err(|e| Error::Internal(e.to_string()))?;
            for (i, word) in list.iter().enumerate() {
                words.push(values::string(word, &format!("args[{i}]"))?);
            }
        }
        Ok(command::quote_command(&program, &words)?)
    };
    quoted().map_err(|e| errors::to_napi(&env, e, None))
}
