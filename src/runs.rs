//! The runs in progress of one JavaScript environment (main or worker thread), by key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lock;
use crate::process::{Group, Signal};

#[derive(Default)]
pub struct Runs(Mutex<HashMap<u64, (CancellationToken, Arc<Group>)>>);

impl Runs {
    pub fn register(
        self: &Arc<Self>,
        key: u64,
        token: &CancellationToken,
        group: &Arc<Group>,
    ) -> Registered {
        lock(&self.0).insert(key, (token.clone(), group.clone()));
        Registered {
            runs: self.clone(),
            key,
        }
    }

    pub fn cancel(&self, key: u64) {
        if let Some((token, _)) = lock(&self.0).get(&key) {
            token.cancel();
        }
    }

    /// [`Group::signal`] for run `key`; `false` also when there is no such run.
    pub fn signal(&self, key: u64, signal: Signal, grace: Duration) -> bool {
        let group = lock(&self.0).get(&key).map(|(_, group)| group.clone());
        group.is_some_and(|group| group.signal(signal, grace))
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }

    pub fn cancel_all(&self) {
        lock(&self.0).values().for_each(|(token, _)| token.cancel());
    }
}

pub struct Registered {
    runs: Arc<Runs>,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.runs.0).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_cancelled_by_key_until_it_ends_and_all_at_once() {
        let runs = Arc::new(Runs::default());
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        let group = Arc::default();
        let registered = runs.register(1, &a, &group);
        let _other = runs.register(2, &b, &group);
        assert!(
            !runs.signal(1, Signal::TERM, Duration::ZERO),
            "no command runs"
        );
        runs.cancel(1);
        assert!(a.is_cancelled() && !b.is_cancelled());
        drop(registered);
        assert_eq!(lock(&runs.0).len(), 1, "an ended run is forgotten");
        runs.cancel_all();
        assert!(b.is_cancelled());
    }
}
