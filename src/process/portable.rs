//! Windows (and Unix with `portable-process`, to test it): no process groups, so a kill reaches
//! the direct child only, and no resource use.

use std::io;
use std::process::ExitStatus;

use super::{Pipe, Signal, Start, Usage};

pub struct Child(tokio::process::Child);

pub fn signal_group(_group: i32, _signal: Signal) -> bool {
    false
}

impl Child {
    /// The child's own id: there is no group, but it tells that the command runs.
    pub fn group(&self) -> i32 {
        self.0.id().map_or(0, |id| id as i32)
    }

    pub fn spawn(start: &Start<'_>) -> io::Result<(Child, Option<Pipe>, Option<Pipe>)> {
        let mut command = std::process::Command::new(start.path);
        command.args(start.args).current_dir(start.cwd);
        if let Some(env) = start.env {
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        command.envs(start.marker);
        let piped = std::process::Stdio::piped;
        command
            .stdin(std::process::Stdio::null())
            .stdout(piped())
            .stderr(piped());
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().map(|p| Box::new(p) as Pipe);
        let stderr = child.stderr.take().map(|p| Box::new(p) as Pipe);
        Ok((Child(child), stdout, stderr))
    }

    /// Resolves once the child has exited. Cancel-safe; tokio keeps the status for `finish`.
    pub async fn exited(&mut self) {
        if self.0.wait().await.is_err() {
            // Nothing more can be learnt; `finish` reports it.
            std::future::pending().await
        }
    }

    /// Any signal ends the child: Windows has no others to send.
    pub fn signal(&mut self, _signal: Signal) {
        let _ = self.0.start_kill();
    }

    pub fn finish(mut self) -> io::Result<(ExitStatus, Option<Usage>)> {
        let status = self.0.try_wait()?;
        Ok((
            status.ok_or_else(|| io::Error::other("the process has not exited"))?,
            None,
        ))
    }
}
