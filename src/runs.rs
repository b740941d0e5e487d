//! The runs in progress of one JavaScript environment (the main thread or a worker thread),
//! each under a key with its cancellation token: how a run is cancelled by its id, and how every
//! run is cancelled at once when its environment goes away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Runs(Mutex<HashMap<u64, CancellationToken>>);

impl Runs {
    /// List `token` under `key` for as long as the returned guard lives.
    pub fn register(self: &Arc<Self>, key: u64, token: &CancellationToken) -> Registered {
        self.lock().insert(key, token.clone());
        Registered {
            runs: self.clone(),
            key,
        }
    }

    pub fn cancel(&self, key: u64) {
        if let Some(token) = self.lock().get(&key) {
            token.cancel();
        }
    }

    pub fn cancel_all(&self) {
        self.lock().values().for_each(CancellationToken::cancel);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, CancellationToken>> {
        crate::lock(&self.0)
    }
}

/// A run's place in [`Runs`], given up when the run ends, however it ends.
pub struct Registered {
    runs: Arc<Runs>,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.runs.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_cancelled_by_key_until_it_ends_and_all_at_once() {
        let runs = Arc::new(Runs::default());
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        let registered = runs.register(1, &a);
        let _other = runs.register(2, &b);
        runs.cancel(1);
        assert!(a.is_cancelled() && !b.is_cancelled());
        drop(registered);
        assert_eq!(runs.lock().len(), 1, "an ended run is forgotten");
        runs.cancel_all();
        assert!(b.is_cancelled());
    }
}
