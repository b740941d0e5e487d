//! Calls into JavaScript from any thread: the storage adapter and the output callbacks.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;

use super::types::{DownloadFn, OutputFn};
use crate::error::ExternalError;
use crate::process::{BoxFuture, OutputSink, Queued, Stream};
use crate::runtime::AssetStore;

/// A storage adapter's rejection, carried through Rust so that the caller gets the same value.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.reason)]
pub struct FromJs(pub napi::Error);

/// The storage adapter for one run: the run id tells the entry which `AbortSignal` to pass.
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

/// `onStdout`, `onStderr`: FIFO queues, so `flush`'s empty last call proves all were delivered.
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
