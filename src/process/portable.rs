//! The portable side of a run (Windows; on Unix only with the `portable-process` feature,
//! which exists to test this path): `tokio::process`, and kills that reach the direct child
//! only — there are no process groups to signal. A helper the command started survives a
//! kill, and no resource use is reported.

use std::io;

use super::{ExitStatus, Pipe, Signal, Usage};

pub struct Child {
    child: tokio::process::Child,
    status: Option<std::process::ExitStatus>,
}

impl Child {
    pub fn spawn(
        command: std::process::Command,
    ) -> io::Result<(Child, Option<Pipe>, Option<Pipe>)> {
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().map(|p| Box::new(p) as Pipe);
        let stderr = child.stderr.take().map(|p| Box::new(p) as Pipe);
        Ok((
            Child {
                child,
                status: None,
            },
            stdout,
            stderr,
        ))
    }

    /// Resolves once the child has exited. Cancel-safe.
    pub async fn exited(&mut self) {
        if self.status.is_none() {
            match self.child.wait().await {
                Ok(status) => self.status = Some(status),
                // Nothing more can be learnt; `finish` reports it.
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// Any signal ends the child: Windows has no others to send.
    pub fn signal(&mut self, _signal: Signal) {
        let _ = self.child.start_kill();
    }

    pub fn finish(mut self) -> io::Result<(ExitStatus, Option<Usage>)> {
        let status = match self.status {
            Some(status) => status,
            None => self
                .child
                .try_wait()?
                .ok_or_else(|| io::Error::other("the process has not exited"))?,
        };
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return Ok((ExitStatus::Signaled(Signal(signal)), None));
        }
        Ok((ExitStatus::Exited(status.code().unwrap_or(-1)), None))
    }
}
