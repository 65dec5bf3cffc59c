//! Rate limits for chat, with `governor` (GCRA): [`Outbound`] paces what an adapter sends
//! (global, per chat, and per group chat per minute, each platform giving its own
//! [`OutboundQuotas`]); [`Inbound`] limits prompts per user.
//!
//! Outbound limits use a burst of one so that the limit holds over *any* window (a larger
//! burst would allow `burst + rate` messages in a window), and the adapter waits rather
//! than drops: nothing final is ever lost to pacing.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Outbound limits of one platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundQuotas {
    /// Least time between two requests of the whole bot.
    pub global_period: Duration,
    /// Least time between two messages to one chat.
    pub chat_period: Duration,
    /// Least time between two messages to one group chat (Telegram: 20 a minute).
    pub group_period: Duration,
}

impl OutboundQuotas {
    /// Telegram's published limits (30/s global, 1/s per chat, 20/min per group) with a
    /// small margin, since the server measures arrival and we measure departure.
    pub const TELEGRAM: Self = Self {
        global_period: Duration::from_millis(35),
        chat_period: Duration::from_millis(1050),
        group_period: Duration::from_millis(3050),
    };
}

fn quota(period: Duration) -> Quota {
    Quota::with_period(period.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN)
}

/// Paces outbound requests (see the module docs).
pub struct Outbound {
    global: DefaultDirectRateLimiter,
    chat: DefaultKeyedRateLimiter<String>,
    group: DefaultKeyedRateLimiter<String>,
}

impl Outbound {
    /// Limiters for `q`.
    pub fn new(q: OutboundQuotas) -> Self {
        Self {
            global: RateLimiter::direct(quota(q.global_period)),
            chat: RateLimiter::keyed(quota(q.chat_period)),
            group: RateLimiter::keyed(quota(q.group_period)),
        }
    }

    /// Waits until a message to `chat` may go (`group`: the group limit applies too).
    pub async fn message(&self, chat: &str, group: bool) {
        let key = chat.to_owned();
        // Slowest first: the later waits are then usually free.
        if group {
            self.group.until_key_ready(&key).await;
        }
        self.chat.until_key_ready(&key).await;
        self.global.until_ready().await;
    }

    /// Waits until any other request (topic creation, callback answers) may go.
    pub async fn other(&self) {
        self.global.until_ready().await;
    }

    /// Forgets idle chats (call now and then so the keyed state stays small).
    pub fn trim(&self) {
        self.chat.retain_recent();
        self.group.retain_recent();
    }
}

/// Limits prompts per user: `per_minute` with that much burst.
pub struct Inbound {
    users: DefaultKeyedRateLimiter<String>,
}

impl Inbound {
    /// A limiter allowing `per_minute` prompts a minute per user (at least one).
    pub fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            users: RateLimiter::keyed(Quota::per_minute(n)),
        }
    }

    /// True when `user` may send a prompt now (and counts it).
    pub fn check(&self, user: &str) -> bool {
        self.users.check_key(&user.to_owned()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn inbound_allows_the_burst_then_refuses() {
        let l = Inbound::new(3);
        assert!(l.check("a") && l.check("a") && l.check("a"));
        assert!(!l.check("a"));
        assert!(l.check("b"), "users are limited separately");
    }

    #[tokio::test]
    async fn outbound_spaces_messages_to_one_chat() {
        let l = Outbound::new(OutboundQuotas {
            global_period: Duration::from_millis(1),
            chat_period: Duration::from_millis(40),
            group_period: Duration::from_millis(40),
        });
        let start = Instant::now();
        for _ in 0..4 {
            l.message("c", true).await;
        }
        assert!(start.elapsed() >= Duration::from_millis(120));
        // Another chat is not held up by the first one's pacing.
        let t = Instant::now();
        l.message("d", false).await;
        assert!(t.elapsed() < Duration::from_millis(40));
    }
}
