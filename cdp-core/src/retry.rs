//! Retry with exponential backoff and jitter, honouring `Retry-After`; and a token-bucket
//! rate limiter. Connectors use both; the runtime retries destination writes with the first.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to retry an operation that failed with a retryable [`Error`].
///
/// Delays grow from `initial_delay` by `factor` up to `max_delay`, each with random jitter so
/// that many workers do not retry in step. When the error carries a `Retry-After` hint
/// ([`Error::retry_after`]) the next delay is at least that long (capped at
/// `max_retry_after`). Non-retryable errors are returned at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `1` disables retrying.
    pub max_attempts: usize,
    /// Delay before the second attempt.
    #[serde(with = "millis")]
    pub initial_delay: Duration,
    /// Largest backoff delay.
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// Growth of the delay per attempt.
    pub factor: f32,
    /// Whether to add random jitter to each delay.
    pub jitter: bool,
    /// Longest `Retry-After` honoured; a longer hint is cut to this.
    #[serde(with = "millis")]
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times(self.max_attempts.saturating_sub(1));
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or runs out of
    /// attempts; the last error is returned. `what` names the operation in logs and metrics.
    ///
    /// When the operation needs to borrow something mutably across attempts, drive the loop
    /// yourself with [`start`](RetryPolicy::start).
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempts = self.start(what);
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(error) => attempts.backoff(error).await?,
            }
        }
    }

    /// Starts counting attempts of one operation, for a hand-written retry loop:
    ///
    /// ```
    /// # async fn demo(mut conn: Vec<u8>) -> cdp_core::Result<()> {
    /// let policy = cdp_core::RetryPolicy::default();
    /// let mut attempts = policy.start("write");
    /// loop {
    ///     match write(&mut conn).await {
    ///         Ok(()) => break,
    ///         Err(e) => attempts.backoff(e).await?, // returns the error when it's final
    ///     }
    /// }
    /// # Ok(()) }
    /// # async fn write(_: &mut Vec<u8>) -> cdp_core::Result<()> { Ok(()) }
    /// ```
    pub fn start<'a>(&'a self, what: &'a str) -> Attempts<'a> {
        Attempts {
            policy: self,
            what,
            delays: self.backoff().build(),
            retries: 0,
        }
    }
}

/// The attempts of one operation under a [`RetryPolicy`]; see [`RetryPolicy::start`].
#[derive(Debug)]
pub struct Attempts<'a> {
    policy: &'a RetryPolicy,
    what: &'a str,
    delays: backon::ExponentialBackoff,
    retries: u64,
}

impl Attempts<'_> {
    /// After a failed attempt: returns `error` if it is final (not retryable, or no
    /// attempts left); otherwise waits the backoff delay — at least the error's
    /// `Retry-After`, within reason — and returns `Ok` to try again.
    pub async fn backoff(&mut self, error: Error) -> Result<()> {
        if !error.is_retryable() {
            return Err(error);
        }
        let Some(backoff) = self.delays.next() else {
            return Err(error);
        };
        let delay = match error.retry_after() {
            Some(hint) => hint.min(self.policy.max_retry_after).max(backoff),
            None => backoff,
        };
        self.retries += 1;
        tracing::warn!(operation = self.what, error = %error, ?delay, "retrying");
        metrics::counter!("cdp_retries_total", "operation" => self.what.to_string()).increment(1);
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// How many retries were made so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }
}

/// A token bucket: `per_second` tokens refill continuously, up to `burst` held at once.
///
/// Built on `governor` (GCRA). Cloning shares the bucket.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: std::sync::Arc<governor::DefaultDirectRateLimiter>,
    burst: NonZeroU32,
}

/// Settings for a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate, in requests (or rows) per second.
    pub per_second: NonZeroU32,
    /// How many may be taken at once after an idle spell.
    pub burst: NonZeroU32,
}

impl RateLimiter {
    /// A limiter for `limit`.
    pub fn new(limit: RateLimit) -> Self {
        let quota = governor::Quota::per_second(limit.per_second).allow_burst(limit.burst);
        RateLimiter {
            inner: std::sync::Arc::new(governor::RateLimiter::direct(quota)),
            burst: limit.burst,
        }
    }

    /// Waits for one token.
    pub async fn acquire(&self) {
        self.inner.until_ready().await;
    }

    /// Waits for `n` tokens (at most `burst` at a time; larger requests wait in steps).
    pub async fn acquire_n(&self, mut n: u32) {
        while n > 0 {
            let step = n.min(self.burst.get());
            if let Some(step_nz) = NonZeroU32::new(step) {
                // `step <= burst`, so this cannot be an insufficient-capacity error.
                let _ = self.inner.until_n_ready(step_nz).await;
            }
            n -= step;
        }
    }

    /// Takes a token if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.inner.check().is_ok()
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            jitter: false,
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicUsize::new(0);
        let out = fast()
            .retry("op", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::transient("test", "flaky"))
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicUsize::new(0);
        let err = fast()
            .retry("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::external("test", "bad credentials"))
            })
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicUsize::new(0);
        let policy = RetryPolicy {
            max_attempts: 3,
            ..fast()
        };
        let err = policy
            .retry("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::transient("test", "down"))
            })
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        fast()
            .retry("op", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(Error::throttled("api", "429", Duration::from_secs(7)))
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap();
        // The backoff alone would wait 1 ms; the hint asked for 7 s.
        assert!(started.elapsed() >= Duration::from_secs(7));
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: NonZeroU32::new(10).unwrap(),
            burst: NonZeroU32::new(1).unwrap(),
        });
        assert!(limiter.try_acquire());
        assert!(!limiter.try_acquire());
    }
}
