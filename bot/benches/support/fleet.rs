//! The fake-daemon load generator the link benches share (`links.rs`, and part 3 of
//! `replicas.rs`): one assistant delta per frame, as ccrmd sends a live turn, streamed on
//! an open link at a steady rate, every frame timed from its send to the bot's ack (which
//! follows the commit).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::event::{Event, EventKind};
use common::ids::SessionId;
use common::link::{DaemonMsg, HubMsg, LinkEvent};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{WAIT, Ws};

/// Event `seq` of `session`: one streamed assistant delta.
pub fn delta(seq: u64, session: SessionId) -> LinkEvent {
    LinkEvent {
        seq,
        event: Event {
            seq,
            ts_ms: 1_700_000_000_000 + seq,
            session_id: session,
            kind: EventKind::AssistantDelta {
                text: format!("token {seq} of a streamed answer, about this long "),
            },
            raw: None,
        },
    }
}

/// What one link saw.
pub struct LinkRun {
    /// Frames sent (the last seq).
    pub sent: u64,
    /// Every frame's send → ack time.
    pub latencies: Vec<Duration>,
}

/// Streams `rate` events a second for `secs` on an open link, one per frame, and waits
/// for the last ack; every frame's send → ack time.
pub async fn stream(
    ws: Ws,
    session: SessionId,
    start: tokio::time::Instant,
    period: Duration,
    until: tokio::time::Instant,
) -> anyhow::Result<LinkRun> {
    let (mut tx, mut rx) = ws.split();
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut latencies = Vec::new();
    let mut seq = 0;
    let deadline = until + WAIT;
    loop {
        let sending = tokio::time::Instant::now() < until;
        if !sending && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sending => {
                seq += 1;
                let frame = DaemonMsg::Events { events: vec![delta(seq, session)] };
                in_flight.push_back((seq, Instant::now()));
                tx.send(Message::text(serde_json::to_string(&frame)?)).await?;
            }
            msg = rx.next() => {
                let msg = msg.context("the bot closed a link")??;
                let Message::Text(t) = msg else { continue };
                match serde_json::from_str::<HubMsg>(t.as_str())? {
                    HubMsg::Ack { seq: acked } => {
                        let now = Instant::now();
                        while in_flight.front().is_some_and(|(s, _)| *s <= acked) {
                            if let Some((_, at)) = in_flight.pop_front() {
                                latencies.push(now - at);
                            }
                        }
                    }
                    HubMsg::Error { error } => bail!("the bot refused a frame: {}", error.message),
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(deadline) => bail!("acks stopped coming ({} frames unacknowledged)", in_flight.len()),
            // Re-check `sending` when the streaming window closes.
            () = tokio::time::sleep_until(until), if sending => {}
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(LinkRun {
        sent: seq,
        latencies,
    })
}
