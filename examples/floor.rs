//! Floors for `benchmark/`: what the bare building blocks cost on this machine, so the
//! runtime's overhead over them can be reported.
//!
//! `floor spawn PROGRAM RUNS`  — tokio spawn-and-wait of PROGRAM with piped stdout/stderr
//! `floor get URL RUNS`        — keep-alive GET of URL with reqwest, body read
//!
//! Prints one JSON array: the milliseconds of each run.

use std::process::Stdio;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: floor spawn PROGRAM RUNS | floor get URL RUNS";
    let (what, target, runs) = match &args[1..] {
        [what, target, runs] => (what.as_str(), target.as_str(), runs.parse::<usize>().expect(usage)),
        _ => panic!("{usage}"),
    };
    let mut times = Vec::with_capacity(runs);
    match what {
        "spawn" => {
            for _ in 0..runs {
                let started = Instant::now();
                let output = tokio::process::Command::new(target)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output()
                    .await
                    .expect("spawn");
                assert!(output.status.success());
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        "get" => {
            let client = reqwest::Client::new();
            for _ in 0..runs {
                let started = Instant::now();
                let body = client.get(target).send().await.expect("get").bytes().await.expect("body");
                assert!(!body.is_empty());
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        _ => panic!("{usage}"),
    }
    println!("{}", serde_json::to_string(&times).unwrap());
}
