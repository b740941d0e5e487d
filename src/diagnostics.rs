//! The bare building blocks of a run, timed on their own: a tokio spawn-and-wait and a
//! keep-alive GET. They are the floors the benchmark holds the runtime's overhead against,
//! measured through the same bridge from Node that `run` uses.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Spawn `program` (no arguments, stdout and stderr piped, as `run` does) and wait for it.
pub async fn spawn_and_wait(program: &str) -> std::io::Result<Duration> {
    let started = Instant::now();
    tokio::process::Command::new(program)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await?;
    Ok(started.elapsed())
}

/// GET `url` with a client kept for every call (so the connection is reused) and read the body.
pub async fn keep_alive_get(url: &str) -> Result<Duration, reqwest::Error> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let started = Instant::now();
    client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn spawning_true_takes_some_time() {
        assert!(super::spawn_and_wait("true").await.unwrap() > std::time::Duration::ZERO);
        assert!(super::spawn_and_wait("no-such-program-hwr").await.is_err());
    }
}
