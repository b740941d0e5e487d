//! `onStdout` / `onStderr`: output pieces delivered to JavaScript as they arrive.
//!
//! Both callbacks go through one threadsafe function whose queue is FIFO, so pieces arrive
//! in the order they were read, and one last call made by `flush` is a barrier: when it has
//! run, every earlier piece has been delivered, before `run` settles. A callback that throws
//! is not called again for that run; the run still resolves with its full result and the
//! error is reported as a process warning, so a broken log hook cannot lose a render.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use tokio::sync::oneshot;

use super::values;
use crate::error::{Error, ExternalError};
use crate::process::{BoxFuture, OutputSink, Stream};

const FLUSH: u32 = 2;

struct Piece {
    kind: u32,
    text: String,
}

type Dispatch = ThreadsafeFunction<Piece, (), FnArgs<(u32, String)>, Status, false, true>;

pub struct JsOutput {
    dispatch: Dispatch,
}

struct Callbacks {
    hooks: [Option<FunctionRef<String, Unknown<'static>>>; 2],
    failed: [AtomicBool; 2],
}

impl JsOutput {
    /// `None` when neither callback is given.
    pub fn from_js(
        env: &Env,
        on_stdout: &Unknown,
        on_stderr: &Unknown,
        prefix: &str,
    ) -> std::result::Result<Option<Self>, Error> {
        let mut hooks: [Option<FunctionRef<String, Unknown<'static>>>; 2] = [None, None];
        for (slot, (value, name)) in hooks
            .iter_mut()
            .zip([(on_stdout, "onStdout"), (on_stderr, "onStderr")])
        {
            if values::is_absent(value) {
                continue;
            }
            if !values::is_function(value) {
                return Err(values::wrong_type(
                    &format!("{prefix}.{name}"),
                    "of type function",
                    value,
                ));
            }
            let f: Function<String, Unknown<'static>> =
                unsafe { value.cast() }.map_err(internal)?;
            *slot = Some(f.create_ref().map_err(internal)?);
        }
        if hooks.iter().all(Option::is_none) {
            return Ok(None);
        }
        let callbacks = Arc::new(Callbacks {
            hooks,
            failed: [AtomicBool::new(false), AtomicBool::new(false)],
        });
        let dispatcher = env
            .create_function_from_closure::<FnArgs<(u32, String)>, (), _>(
                "dispatchOutput",
                move |ctx| {
                    let kind: u32 = ctx.get(0)?;
                    let Some(Some(hook)) = callbacks.hooks.get(kind as usize) else {
                        return Ok(());
                    };
                    if callbacks.failed[kind as usize].load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let text: String = ctx.get(1)?;
                    if let Err(err) = hook.borrow_back(ctx.env).and_then(|f| f.call(text)) {
                        callbacks.failed[kind as usize].store(true, Ordering::Relaxed);
                        let name = if kind == 0 { "onStdout" } else { "onStderr" };
                        warn(ctx.env, name, err);
                    }
                    Ok(())
                },
            )
            .map_err(internal)?;
        let dispatch = dispatcher
            .build_threadsafe_function::<Piece>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(FnArgs::from((ctx.value.kind, ctx.value.text))))
            .map_err(internal)?;
        Ok(Some(JsOutput { dispatch }))
    }
}

fn internal(e: napi::Error) -> Error {
    Error::Internal(format!("cannot set up the output callbacks: {e}"))
}

/// `process.emitWarning(…)` for a callback that threw.
fn warn(env: &Env, name: &str, err: napi::Error) {
    let message = format!(
        "{name} threw and will not be called again for this run (its output is still in the result): {}",
        err.reason
    );
    let emit = || -> Result<()> {
        let process: Object = env.get_global()?.get_named_property("process")?;
        let emit: Function<FnArgs<(String, String)>, Unknown> =
            process.get_named_property("emitWarning")?;
        emit.apply(
            process,
            FnArgs::from((message, "HeliosWorkerRuntimeWarning".to_owned())),
        )?;
        Ok(())
    };
    let _ = emit();
}

impl OutputSink for JsOutput {
    fn piece(&self, stream: Stream, text: String) {
        let kind = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        self.dispatch.call(
            Piece { kind, text },
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }

    fn flush(&self) -> BoxFuture<'_, std::result::Result<(), ExternalError>> {
        let (tx, rx) = oneshot::channel();
        let status = self.dispatch.call_with_return_value(
            Piece {
                kind: FLUSH,
                text: String::new(),
            },
            ThreadsafeFunctionCallMode::NonBlocking,
            move |_, _| {
                let _ = tx.send(());
                Ok(())
            },
        );
        Box::pin(async move {
            if status == Status::Ok {
                // Err only when Node is shutting down; nothing is left to deliver to then.
                let _ = rx.await;
            }
            Ok(())
        })
    }
}
