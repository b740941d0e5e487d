//! Calls into JavaScript from any thread: the storage adapter, awaited as a promise, and the
//! output callbacks, queued in order with a barrier before the run settles.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;

use super::types::{DownloadFn, OutputFn};
use crate::error::ExternalError;
use crate::process::{BoxFuture, OutputSink, Queued, Stream};
use crate::runtime::AssetStore;

/// An error that came from JavaScript (a storage adapter's rejection), carried through Rust so
/// that the caller gets the very same value back.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.reason)]
pub struct FromJs(pub napi::Error);

/// The storage adapter, as one run calls it: its run id tells the JavaScript entry which
/// run's `AbortSignal` to hand the adapter.
pub struct RunStorage {
    pub download: Arc<DownloadFn>,
    pub run_id: u32,
}

impl AssetStore for RunStorage {
    fn download_asset_bundle(
        &self,
        job_id: Option<String>,
        remote_url: String,
        target_dir: PathBuf,
    ) -> BoxFuture<'static, std::result::Result<(), ExternalError>> {
        let download = self.download.clone();
        let target_dir = target_dir.display().to_string();
        let args = (job_id, remote_url, target_dir, self.run_id);
        let from_js = |e: napi::Error| Box::new(FromJs(e)) as ExternalError;
        Box::pin(async move {
            let called = download.call_async_catch(args.into()).await;
            called.map_err(from_js)?.await.map_err(from_js)
        })
    }
}

/// `onStdout` and `onStderr`. Each queue is FIFO, so pieces arrive in the order they were
/// read, and one last (empty) call per stream proves every earlier piece was delivered.
pub struct JsOutput {
    pub streams: [Option<Arc<OutputFn>>; 2],
    pub queued: Arc<Queued>,
}

impl OutputSink for JsOutput {
    fn piece(&self, stream: Stream, text: String) {
        let Some(callback) = &self.streams[stream as usize] else {
            return;
        };
        let len = text.len();
        self.queued.add(len);
        let on_js = self.queued.clone();
        let status = callback.call_with_return_value(
            text,
            ThreadsafeFunctionCallMode::NonBlocking,
            move |_, _| {
                on_js.delivered(len);
                Ok(())
            },
        );
        // Closing is the only failure: Node is going away and nobody is listening.
        if status != Status::Ok {
            self.queued.delivered(len);
        }
    }

    fn queued(&self) -> &Queued {
        &self.queued
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for callback in self.streams.iter().flatten() {
                let _ = callback.call_async_catch(String::new()).await;
            }
        })
    }
}
