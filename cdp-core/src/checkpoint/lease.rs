//! One writer per pipeline: the [`Lease`] a run holds on its pipeline id for as long as it
//! runs, taken from its [`StateStore`](super::StateStore).
//!
//! Two runs of one pipeline at once (a cron job overlapping the previous run, a deploy that
//! starts a new worker before the old one stops) would read the same input from the same
//! committed cursors and write it twice, or stage files under the same names and corrupt
//! each other's. A lease makes the second run wait for the first to end, or refuse to start
//! with [`Error::Leased`](crate::Error::Leased). The lock behind it dies with the process or
//! connection holding it, so a run killed with `SIGKILL` never leaves a stale lease behind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// How often a waiting run tries the lease again.
pub(crate) const LEASE_POLL: Duration = Duration::from_millis(100);

/// What keeps a [`Lease`] held: a store's lock (a file lock, a database session's advisory
/// lock), released when the guard is dropped.
pub trait LeaseGuard: std::fmt::Debug + Send + Sync {
    /// Whether the lock is still held. A lock tied to a connection is lost with it, and
    /// then another run may have started: the runtime checks before every state commit and
    /// stops the run rather than commit beside another writer. Defaults to `Ok`.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A run's exclusive hold on its pipeline id; see the [module docs](self). Released when
/// dropped.
#[derive(Debug)]
pub struct Lease {
    pipeline_id: String,
    guard: Option<Box<dyn LeaseGuard>>,
}

impl Lease {
    /// A lease of `pipeline_id` held by `guard`.
    pub fn new(pipeline_id: impl Into<String>, guard: impl LeaseGuard + 'static) -> Self {
        Lease {
            pipeline_id: pipeline_id.into(),
            guard: Some(Box::new(guard)),
        }
    }

    /// A lease that guards nothing: what a store that cannot lock hands out. Two runs of
    /// the pipeline are then not kept apart.
    pub fn unguarded(pipeline_id: impl Into<String>) -> Self {
        Lease {
            pipeline_id: pipeline_id.into(),
            guard: None,
        }
    }

    /// The pipeline this lease is for.
    pub fn pipeline_id(&self) -> &str {
        &self.pipeline_id
    }

    /// Whether anything guards this lease (see [`unguarded`](Self::unguarded)).
    pub fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }

    /// `Ok` while the lease is still held; see [`LeaseGuard::check`].
    pub fn check(&self) -> Result<()> {
        match &self.guard {
            Some(guard) => guard.check(),
            None => Ok(()),
        }
    }
}

/// Who holds a lease, for the error a second run gets: this process, now.
#[cfg(feature = "sqlite")]
pub(crate) fn holder_description() -> String {
    format!(
        "pid {} since {}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Leases held within one process, by pipeline id: the lease of the in-memory stores, which
/// no other process can share anyway.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalLeases {
    held: Arc<Mutex<HashSet<String>>>,
}

impl LocalLeases {
    /// Takes the lease of `pipeline_id`, waiting up to `wait` for its holder to drop it.
    pub(crate) async fn acquire(&self, pipeline_id: &str, wait: Duration) -> Result<Lease> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut held = self
                    .held
                    .lock()
                    .map_err(|_| Error::State("lease registry lock poisoned".into()))?;
                if held.insert(pipeline_id.to_string()) {
                    return Ok(Lease::new(
                        pipeline_id,
                        LocalGuard {
                            pipeline_id: pipeline_id.to_string(),
                            held: self.held.clone(),
                        },
                    ));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Leased {
                    pipeline: pipeline_id.to_string(),
                    holder: "another run in this process".into(),
                    waited: wait,
                });
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }
}

#[derive(Debug)]
struct LocalGuard {
    pipeline_id: String,
    held: Arc<Mutex<HashSet<String>>>,
}

impl LeaseGuard for LocalGuard {}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&self.pipeline_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_lease_waits_for_the_first_or_is_refused() {
        let leases = LocalLeases::default();
        let first = leases.acquire("p", Duration::ZERO).await.unwrap();
        let refused = leases.acquire("p", Duration::ZERO).await.unwrap_err();
        assert!(
            matches!(&refused, Error::Leased { pipeline, .. } if pipeline == "p"),
            "{refused}"
        );
        assert!(!refused.is_retryable());
        // Another pipeline is not held up.
        let _other = leases.acquire("q", Duration::ZERO).await.unwrap();

        let waiting = {
            let leases = leases.clone();
            tokio::spawn(async move { leases.acquire("p", Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(second.pipeline_id(), "p");
        assert!(second.is_guarded());
    }
}
