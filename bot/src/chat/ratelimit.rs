//! Rate limits for chat, with `governor` (GCRA): [`Outbound`] paces what an adapter sends
//! (global, per chat, and per group chat per minute, each platform giving its own
//! [`OutboundQuotas`]); [`Inbound`] limits prompts per user.
//!
//! Outbound limits use a burst of one so that the limit holds over *any* window (a larger
//! burst would allow `burst + rate` messages in a window), and the adapter waits rather
//! than drops: nothing final is ever lost to pacing. Messages have a [`Lane`]: answers go
//! first, tidy-ups wait behind them, and progress is only sent when the budget is free,
//! so a busy group spends its budget on answers.

use std::num::NonZeroU32;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::lock;

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

/// How urgent an outbound message is where a chat's budget is shared (a Telegram group's 20
/// messages a minute, a Discord channel's 5 per 5 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Answers, approvals, notices, command replies: wait for the budget, ahead of the rest.
    Answer,
    /// Tidying up (a progress message marked done once its answer is out): waits, and lets
    /// every waiting answer to the same chat go first.
    Tidy,
    /// Progress: goes only when the budget allows it now and no answer is waiting for it;
    /// otherwise it is skipped (the caller shows the progress later, or never).
    Progress,
}

/// One chat's pacing: when it may next get a message, and how many answers wait for it.
#[derive(Default)]
struct Slot {
    next: Option<Instant>,
    next_group: Option<Instant>,
    answers_waiting: usize,
}

/// Paces outbound requests (see the module docs).
///
/// Per chat (and per group) the pacing is a plain "next free instant" with a burst of one
/// (what `governor`'s GCRA does with a burst of one), kept here because messages of
/// different urgency share it: a waiting answer makes tidy-ups wait and progress skip.
/// `governor` paces the bot-wide limit.
pub struct Outbound {
    q: OutboundQuotas,
    global: DefaultDirectRateLimiter,
    chats: Mutex<HashMap<String, Slot>>,
}

impl Outbound {
    /// Limiters for `q`.
    pub fn new(q: OutboundQuotas) -> Self {
        Self {
            q,
            global: RateLimiter::direct(quota(q.global_period)),
            chats: Mutex::default(),
        }
    }

    /// Waits until an answer to `chat` may go (`group`: the group limit applies too).
    pub async fn message(&self, chat: &str, group: bool) {
        self.message_in(Lane::Answer, chat, group).await;
    }

    /// Waits until a message of `lane` to `chat` may go; false (nothing reserved) when a
    /// [`Lane::Progress`] message may not go now.
    pub async fn message_in(&self, lane: Lane, chat: &str, group: bool) -> bool {
        let mut counted = false;
        loop {
            let wait = {
                let mut chats = lock(&self.chats);
                let slot = chats.entry(chat.to_owned()).or_default();
                let now = Instant::now();
                let mut ready = slot.next.unwrap_or(now);
                if group {
                    ready = ready.max(slot.next_group.unwrap_or(now));
                }
                let others_first = lane != Lane::Answer && slot.answers_waiting > 0;
                if ready <= now && !others_first {
                    slot.next = Some(now + self.q.chat_period);
                    if group {
                        slot.next_group = Some(now + self.q.group_period);
                    }
                    if counted {
                        slot.answers_waiting = slot.answers_waiting.saturating_sub(1);
                    }
                    None
                } else if lane == Lane::Progress {
                    return false;
                } else {
                    if lane == Lane::Answer && !counted {
                        slot.answers_waiting += 1;
                        counted = true;
                    }
                    // A tidy-up waiting behind an answer looks again once that answer had
                    // its turn.
                    let at = ready.max(now)
                        + if others_first {
                            TIDY_LAG
                        } else {
                            Duration::ZERO
                        };
                    Some(at)
                }
            };
            match wait {
                None => break,
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
        self.global.until_ready().await;
        true
    }

    /// Waits until any other request (topic creation, callback answers) may go.
    pub async fn other(&self) {
        self.global.until_ready().await;
    }

    /// Forgets idle chats (call now and then so the state stays small).
    pub fn trim(&self) {
        let now = Instant::now();
        lock(&self.chats).retain(|_, s| {
            s.answers_waiting > 0
                || s.next.is_some_and(|t| t > now)
                || s.next_group.is_some_and(|t| t > now)
        });
    }
}

/// How long after an answer's turn a waiting tidy-up looks again.
const TIDY_LAG: Duration = Duration::from_millis(20);

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
    use super::*;

    #[test]
    fn inbound_allows_the_burst_then_refuses() {
        let l = Inbound::new(3);
        assert!(l.check("a") && l.check("a") && l.check("a"));
        assert!(!l.check("a"));
        assert!(l.check("b"), "users are limited separately");
    }

    fn limits() -> Outbound {
        Outbound::new(OutboundQuotas {
            global_period: Duration::from_millis(1),
            chat_period: Duration::from_millis(40),
            group_period: Duration::from_millis(100),
        })
    }

    // These check spacing from below and order, never how fast the machine is.
    #[tokio::test]
    async fn outbound_spaces_messages_to_one_chat() {
        let l = limits();
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            l.message("c", true).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "group pacing"
        );
        // Another chat is not held up by the first one's pacing: its progress may go now.
        assert!(l.message_in(Lane::Progress, "d", false).await);
    }

    #[tokio::test]
    async fn answers_go_first_progress_skips_and_tidy_waits() {
        let l = std::sync::Arc::new(limits());
        assert!(l.message_in(Lane::Progress, "g", true).await, "free budget");
        assert!(
            !l.message_in(Lane::Progress, "g", true).await,
            "no budget now: progress is skipped"
        );
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let tidy = {
            let (l, order) = (l.clone(), order.clone());
            tokio::spawn(async move {
                l.message_in(Lane::Tidy, "g", true).await;
                lock(&order).push("tidy");
            })
        };
        tokio::task::yield_now().await;
        let answer = {
            let (l, order) = (l.clone(), order.clone());
            tokio::spawn(async move {
                l.message_in(Lane::Answer, "g", true).await;
                lock(&order).push("answer");
            })
        };
        tokio::task::yield_now().await;
        assert!(
            !l.message_in(Lane::Progress, "g", true).await,
            "an answer is waiting: progress is skipped"
        );
        let _ = tokio::join!(tidy, answer);
        assert_eq!(*lock(&order), ["answer", "tidy"], "the answer went first");
        l.trim();
    }
}
