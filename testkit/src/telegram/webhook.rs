//! Webhook mode of the fake: `setWebhook` (`url`, `secret_token`, `allowed_updates`),
//! `deleteWebhook` and `getWebhookInfo` as the Bot API has them, and [`deliver`], the task
//! that POSTs each queued update to the registered URL with the
//! `X-Telegram-Bot-Api-Secret-Token` header, one at a time in order, as Telegram does with
//! `max_connections=1`. An update leaves the queue only when the bot answers 2xx; any other
//! answer (or none) is recorded and the same update is delivered again after a short
//! backoff, like Telegram's retries. While a webhook is set, `getUpdates` fails with 409
//! Conflict, as on Telegram.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::Shared;
use super::world::{Delivery, Failure, Params, Webhook, World};
use crate::state::lock;

/// The header Telegram sends the secret token in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// The error of `getUpdates` while a webhook is set.
pub(super) fn conflict() -> Failure {
    Failure {
        code: 409,
        description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first".to_owned(),
        retry_after: None,
    }
}

impl World {
    /// `setWebhook`.
    pub(super) fn set_webhook(&mut self, p: &Params) -> Result<Value, Failure> {
        let url = p.string("url")?.unwrap_or_default();
        if url.is_empty() {
            self.webhook = None;
            return Ok(json!(true));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Failure::bad(
                "bad webhook: An HTTPS URL must be provided for webhook",
            ));
        }
        let secret = p.string("secret_token")?;
        let allowed_secret = |s: &String| {
            (1..=256).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if secret.as_ref().is_some_and(|s| !allowed_secret(s)) {
            return Err(Failure::bad(
                "bad webhook: secret token contains unallowed characters",
            ));
        }
        let allowed = match p.structured("allowed_updates", "allowed_updates")? {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if p.flag("drop_pending_updates") {
            self.queue.clear();
        }
        self.webhook = Some(Webhook {
            url,
            secret,
            allowed,
        });
        Ok(json!(true))
    }

    /// `deleteWebhook`.
    pub(super) fn delete_webhook(&mut self, p: &Params) -> Value {
        if p.flag("drop_pending_updates") {
            self.queue.clear();
        }
        self.webhook = None;
        json!(true)
    }

    /// `getWebhookInfo`.
    pub(super) fn webhook_info(&self) -> Value {
        let mut v = json!({
            "url": self.webhook.as_ref().map_or("", |w| w.url.as_str()),
            "has_custom_certificate": false,
            "pending_update_count": self.queue.len(),
        });
        if let Some(w) = &self.webhook
            && !w.allowed.is_empty()
        {
            v["allowed_updates"] = json!(w.allowed);
        }
        if let Some(d) = self
            .deliveries
            .iter()
            .rev()
            .find(|d| !(200..300).contains(&d.status))
        {
            v["last_error_message"] =
                json!(format!("Wrong response from the webhook: {}", d.status));
        }
        v
    }

    /// The next update to post, and where: the first queued one, once a webhook is set.
    /// Updates of kinds the webhook does not take are dropped, as Telegram does.
    fn next_delivery(&mut self) -> Option<(Webhook, i64, Value)> {
        let hook = self.webhook.clone()?;
        while let Some((id, update)) = self.queue.front().cloned() {
            let kind_ok = hook.allowed.is_empty()
                || update
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| hook.allowed.contains(k)));
            if kind_ok {
                return Some((hook, id, update));
            }
            self.queue.pop_front();
        }
        None
    }
}

/// Posts queued updates to the webhook while one is set (see the module docs); ends when
/// the fake closes.
pub(super) async fn deliver(shared: Arc<Shared>) {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    else {
        return;
    };
    let mut changes = shared.version.subscribe();
    let mut failures: u32 = 0;
    loop {
        changes.borrow_and_update();
        let next = {
            let mut world = lock(&shared.world);
            if world.closed {
                return;
            }
            world.next_delivery()
        };
        let Some((hook, id, update)) = next else {
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut req = client.post(&hook.url).json(&update);
        if let Some(s) = &hook.secret {
            req = req.header(SECRET_HEADER, s);
        }
        let at = SystemTime::now();
        let status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        let ok = (200..300).contains(&status);
        {
            let mut world = lock(&shared.world);
            world.deliveries.push(Delivery {
                update_id: id,
                update,
                status,
                at,
            });
            if ok {
                if world.queue.front().is_some_and(|(first, _)| *first == id) {
                    world.queue.pop_front();
                }
                world.served.push(id);
            }
        }
        shared.changed();
        if ok {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
            let wait = Duration::from_millis(100 * u64::from(failures.min(20)));
            tokio::time::sleep(wait).await;
        }
    }
}
