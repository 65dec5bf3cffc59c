//! The updates taken from Telegram whose handlers have not yet claimed them. The update
//! listener ([`super::run`]'s long poll) stores the next offset, and asks Telegram for more
//! (which confirms everything before it), only once every update it handed out has been
//! claimed in SQLite, so a message is never confirmed to Telegram before it is kept (a
//! prompt piece with its `chat_pending` row, see `crate::chat::inbox`). A handler marks its
//! update done with a [`Guard`], whichever way it returns.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

/// Longest wait for handlers before the offset moves anyway (a handler stuck that long
/// must not stop the bot from polling).
const WAIT: Duration = Duration::from_secs(10);

/// See the module docs.
#[derive(Default)]
pub struct Inflight {
    ids: Mutex<HashSet<u32>>,
    changed: Notify,
}

impl Inflight {
    /// Notes that update `id` was handed to the dispatcher.
    pub fn add(&self, id: u32) {
        lock(&self.ids).insert(id);
    }

    /// A guard that marks update `id` done when dropped.
    pub fn guard(self: &Arc<Self>, id: u32) -> Guard {
        Guard {
            inflight: self.clone(),
            id,
        }
    }

    /// Marks update `id` done.
    pub fn done(&self, id: u32) {
        let empty = {
            let mut ids = lock(&self.ids);
            ids.remove(&id);
            ids.is_empty()
        };
        if empty {
            self.changed.notify_waiters();
        }
    }

    /// Waits until no update is in flight (at most [`WAIT`]).
    pub async fn settled(&self) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if lock(&self.ids).is_empty() {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            let left = std::mem::take(&mut *lock(&self.ids));
            warn!(
                updates = left.len(),
                "telegram updates still being handled after 10 s; polling on"
            );
        }
    }
}

/// Marks its update done when dropped (see [`Inflight::guard`]).
pub struct Guard {
    inflight: Arc<Inflight>,
    id: u32,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inflight.done(self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_once_every_guard_is_dropped() {
        let f = Arc::new(Inflight::default());
        f.add(1);
        f.add(2);
        let g1 = f.guard(1);
        let g2 = f.guard(2);
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.settled().await }
        });
        drop(g1);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiter.is_finished(),
            "settled while update 2 was in flight"
        );
        drop(g2);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled in time")
            .expect("task");
        assert!(lock(&f.ids).is_empty());
    }
}
