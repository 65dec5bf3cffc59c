//! The inbound debounce: messages written less than [`DEBOUNCE`] apart in one place are
//! one prompt. [`Debounce`] keeps one open window per place; the first piece opens a
//! [`Window`], which its caller collects in a task, and later pieces join it until it has
//! been quiet for [`DEBOUNCE`]. The pieces are joined in message-id order, since adapters
//! may hand messages over concurrently.
//!
//! Nothing here talks to a platform or a daemon: [`super::prompts`] feeds the windows and
//! sends what they collect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::attach::ImageBlock;
use tokio::sync::mpsc;

use super::{Place, Sender, lock};

/// Messages closer together than this join one prompt.
pub const DEBOUNCE: Duration = Duration::from_millis(1500);

/// A prompt piece waiting for its window to close.
pub struct Piece {
    /// Who wrote it.
    pub from: Sender,
    /// What they wrote.
    pub text: String,
    /// The platform's message id (see [`super::Incoming::msg_id`]).
    pub order: Option<u64>,
    /// Its `chat_pending` row ([`super::inbox`]), deleted once the prompt is delivered.
    pub pending: Option<i64>,
    /// Images sent with it (see [`super::attachments`]).
    pub images: Vec<ImageBlock>,
}

/// What a closed window holds: one prompt.
pub struct Joined {
    /// The writer of the first piece.
    pub from: Sender,
    /// The pieces' texts, one per line.
    pub text: String,
    /// How many pieces were joined.
    pub pieces: usize,
    /// The pieces' `chat_pending` rows.
    pub pending: Vec<i64>,
    /// The pieces' images, in order.
    pub images: Vec<ImageBlock>,
}

/// The open windows: per place, where its pieces go.
type Open = Arc<Mutex<HashMap<Place, mpsc::UnboundedSender<Piece>>>>;

/// The open windows of every place (see the module docs). Clones share the windows.
#[derive(Clone, Default)]
pub struct Debounce {
    open: Open,
}

impl Debounce {
    /// Adds `piece` to the open window of `place`; when none is open, opens one and returns
    /// it for the caller to [`Window::collect`].
    pub fn push(&self, place: &Place, piece: Piece) -> Option<Window> {
        // The map lock is held while sending so a window closing cannot miss a piece (it
        // drains under the same lock).
        let mut map = lock(&self.open);
        let piece = match map.get(place) {
            Some(tx) => match tx.send(piece) {
                Ok(()) => return None,
                Err(mpsc::error::SendError(p)) => p,
            },
            None => piece,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(piece);
        map.insert(place.clone(), tx);
        Some(Window {
            open: self.open.clone(),
            place: place.clone(),
            rx,
        })
    }

    /// Closes every window: each ends at once with what it has.
    pub fn close_all(&self) {
        lock(&self.open).clear();
    }
}

/// One place's open window, returned by [`Debounce::push`].
pub struct Window {
    open: Open,
    place: Place,
    rx: mpsc::UnboundedReceiver<Piece>,
}

impl Window {
    /// Gathers pieces until [`DEBOUNCE`] passes without a new one (or the window is
    /// closed), then joins them in message-id order; `None` when there were none.
    pub async fn collect(mut self) -> Option<Joined> {
        let mut pieces = Vec::new();
        loop {
            match tokio::time::timeout(DEBOUNCE, self.rx.recv()).await {
                Ok(Some(p)) => pieces.push(p),
                Ok(None) => break,
                Err(_) => {
                    let mut map = lock(&self.open);
                    map.remove(&self.place);
                    while let Ok(p) = self.rx.try_recv() {
                        pieces.push(p);
                    }
                    break;
                }
            }
        }
        pieces.sort_by_key(|p| p.order);
        let from = pieces.first()?.from.clone();
        let text = pieces
            .iter()
            .map(|p| p.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let images = pieces
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.images))
            .collect();
        Some(Joined {
            from,
            text,
            pieces: pieces.len(),
            pending: pieces.iter().filter_map(|p| p.pending).collect(),
            images,
        })
    }
}
