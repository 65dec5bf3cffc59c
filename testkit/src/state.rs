//! Plumbing the loopback fakes share: a lock that survives a panic elsewhere, waiting on a
//! state that announces its changes, and clipping long texts for failure messages.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Locks a mutex, carrying on after a panic elsewhere: the data are plain records.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Re-checks `check` on `state` each time `version` changes, until it yields a value or
/// `timeout` passes (no polling: the fakes bump `version` on every change). `what` names
/// the fake in the error when its state is dropped.
pub(crate) async fn wait_until<S, T>(
    state: &Mutex<S>,
    version: &watch::Sender<u64>,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&S) -> Option<T>,
) -> anyhow::Result<T> {
    let mut changes = version.subscribe();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check(&lock(state)) {
            return Ok(found);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => anyhow::bail!("{what} state dropped"),
            Err(_) => anyhow::bail!("timed out after {timeout:?}"),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub(crate) fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("short".into(), 10), "short");
        assert_eq!(clip("héllo".into(), 2), "h…");
        assert_eq!(clip("abcdef".into(), 3), "abc…");
    }

    #[tokio::test]
    async fn wait_until_wakes_on_a_change_and_times_out() {
        let state = std::sync::Arc::new(Mutex::new(0u32));
        let version = std::sync::Arc::new(watch::Sender::new(0u64));
        let (s, v) = (state.clone(), version.clone());
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            *lock(&s) = 7;
            v.send_modify(|n| *n += 1);
        });
        let got = wait_until(&state, &version, Duration::from_secs(5), "test", |n| {
            (*n == 7).then_some(*n)
        })
        .await
        .expect("woken");
        assert_eq!(got, 7);
        let err = wait_until(&state, &version, Duration::from_millis(20), "test", |n| {
            (*n == 8).then_some(())
        })
        .await
        .expect_err("times out");
        assert!(err.to_string().contains("timed out"));
    }
}
