//! `run()`: load → validate → assets → find chunk → execute, in the order of CONTRACT §2.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;

use crate::cancel::{cancelled, CancelToken};
use crate::command::parse_command;
use crate::error::{Error, ExternalError};
use crate::fetch::FetchConfig;
use crate::process::{self, BoxFuture, Controls, Outcome, OutputSink};
use crate::source::{JobSource, Loader};
use crate::spec;

/// Downloads a job's asset bundle into the workspace (the user's `ArtifactStorage`).
pub trait AssetStore: Send + Sync {
    fn download_asset_bundle(
        &self,
        job_id: Option<String>,
        remote_url: String,
        target_dir: PathBuf,
    ) -> BoxFuture<'static, Result<(), ExternalError>>;
}

/// A runtime: one workspace, one optional storage adapter, one HTTP client for every run.
pub struct Runtime {
    workspace: PathBuf,
    storage: Option<Arc<dyn AssetStore>>,
    loader: Loader,
}

/// Per-run extras beyond the controls.
#[derive(Default)]
pub struct RunExtras {
    pub sink: Option<Arc<dyn OutputSink>>,
    pub cancel: Option<CancelToken>,
}

impl Runtime {
    pub fn new(
        workspace: PathBuf,
        storage: Option<Arc<dyn AssetStore>>,
        fetch: FetchConfig,
    ) -> Self {
        Runtime {
            workspace,
            storage,
            loader: Loader::new(fetch),
        }
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Run chunk `chunk_id` of the spec at `source`.
    pub async fn run(
        &self,
        source: JobSource,
        chunk_id: i64,
        controls: Controls,
        extras: RunExtras,
    ) -> Result<Outcome, Error> {
        let cancel = extras.cancel.as_ref();
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(Error::Aborted);
        }
        let prepare = async {
            let plan = self
                .loader
                .load(&source, move |bytes, name| {
                    spec::plan(bytes, name, chunk_id)
                })
                .await?;
            if let Some(url) = plan.assets_url {
                let storage = self.storage.as_ref().ok_or(Error::StorageRequired)?;
                ensure_workspace(&self.workspace)?;
                storage
                    .download_asset_bundle(plan.job_id, url, self.workspace.clone())
                    .await
                    .map_err(Error::Storage)?;
            }
            let command = parse_command(&plan.command?)?;
            ensure_workspace(&self.workspace)?;
            Ok::<_, Error>(command)
        };
        let command = tokio::select! {
            biased;
            _ = cancelled(cancel) => return Err(Error::Aborted),
            command = prepare => command?,
        };
        let sink = extras.sink.as_deref();
        process::run(process::Command {
            program: &command.program,
            args: &command.args,
            cwd: &self.workspace,
            controls: &controls,
            sink,
            cancel,
        })
        .await
    }
}

/// Run `work` so that a panic anywhere in it becomes an error the caller can handle, never an
/// abort of the host process. Polled in place: no extra task, no extra thread hop.
pub async fn contain_panics<T>(work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Poll::Ready(Err(Error::Internal(format!("panic: {what}"))))
            }
        }
    })
    .await
}

/// Create the workspace (and its parents) when missing; refuse a path that is not a directory.
fn ensure_workspace(dir: &Path) -> Result<(), Error> {
    let shown = dir.display().to_string();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Io {
            code: "ENOTDIR",
            errno: -20,
            syscall: "mkdir",
            path: shown,
            detail: ": the workspaceDir exists and is not a directory".into(),
        }),
        Err(_) => std::fs::create_dir_all(dir).map_err(|e| {
            let mut err = Error::io(&e, "mkdir", shown);
            if let Error::Io { detail, .. } = &mut err {
                *detail = ": cannot create the workspaceDir".into();
            }
            err
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hwr-runtime-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_spec(dir: &Path, json: &str) -> JobSource {
        let path = dir.join("job.json");
        std::fs::write(&path, json).unwrap();
        JobSource::File {
            shown: path.display().to_string(),
            path,
        }
    }

    struct RecordingStore(Mutex<Vec<(Option<String>, String, PathBuf)>>);

    impl AssetStore for RecordingStore {
        fn download_asset_bundle(
            &self,
            job_id: Option<String>,
            remote_url: String,
            target_dir: PathBuf,
        ) -> BoxFuture<'static, Result<(), ExternalError>> {
            self.0
                .lock()
                .unwrap()
                .push((job_id, remote_url, target_dir.clone()));
            Box::pin(async move {
                std::fs::write(target_dir.join("asset.txt"), "from storage")?;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn runs_the_chunk_in_a_created_workspace_after_the_assets() {
        let dir = temp_dir("assets");
        let source = write_spec(
            &dir,
            r#"{"id":"job-7","assetsUrl":"s3://b/a.zip","chunks":[{"id":1,"command":"cat asset.txt"}]}"#,
        );
        let workspace = dir.join("deep/work");
        let store = Arc::new(RecordingStore(Mutex::default()));
        let runtime = Runtime::new(
            workspace.clone(),
            Some(store.clone()),
            FetchConfig::default(),
        );
        let outcome = runtime
            .run(source, 1, Controls::default(), RunExtras::default())
            .await
            .unwrap();
        assert_eq!(outcome.stdout, "from storage");
        let calls = store.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            [(
                Some("job-7".to_owned()),
                "s3://b/a.zip".to_owned(),
                workspace
            )]
        );
    }

    #[tokio::test]
    async fn assets_without_storage_are_refused_before_the_chunk_is_looked_up() {
        let dir = temp_dir("nostorage");
        let source = write_spec(&dir, r#"{"assetsUrl":"s3://x","chunks":[]}"#);
        let runtime = Runtime::new(dir.join("w"), None, FetchConfig::default());
        let err = runtime
            .run(source, 3, Controls::default(), RunExtras::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "ERR_STORAGE_REQUIRED");
    }

    #[tokio::test]
    async fn a_workspace_that_is_a_file_is_refused() {
        let dir = temp_dir("notdir");
        let source = write_spec(&dir, r#"{"chunks":[{"id":0,"command":"true"}]}"#);
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let runtime = Runtime::new(file.clone(), None, FetchConfig::default());
        let err = runtime
            .run(source, 0, Controls::default(), RunExtras::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "ENOTDIR");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_panic_becomes_an_internal_error() {
        let err = contain_panics(async { panic!("boom") as Result<(), Error> })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "ERR_INTERNAL");
        assert!(err.to_string().contains("panic: boom"), "{err}");
    }

    #[tokio::test]
    async fn an_already_cancelled_run_does_nothing() {
        let dir = temp_dir("cancelled");
        let marker = dir.join("ran");
        let source = write_spec(
            &dir,
            &format!(
                r#"{{"chunks":[{{"id":0,"command":"touch {}"}}]}}"#,
                marker.display()
            ),
        );
        let runtime = Runtime::new(dir.clone(), None, FetchConfig::default());
        let token = CancelToken::new();
        token.cancel();
        let extras = RunExtras {
            cancel: Some(token),
            ..RunExtras::default()
        };
        let err = runtime
            .run(source, 0, Controls::default(), extras)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Aborted));
        assert!(!marker.exists());
    }
}
