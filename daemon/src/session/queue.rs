//! The session's own FIFO prompt queue and the turn in progress.
//!
//! Prompts are numbered from one counter per session (prompts typed in the TUI take their
//! ids from it too, see [`super::handover`]). The actor writes the next prompt to the child
//! only after the previous turn's `result` ([`PromptQueue::start_next`] once the child is
//! idle), so every prompt gets its own turn.

use std::collections::VecDeque;

use common::attach::ImageBlock;

/// A queued prompt: id, text and the images sent with it.
type Queued = (u64, String, Vec<ImageBlock>);

/// Queued prompts (id, text, images), the prompt whose turn runs, and the next prompt id.
pub(super) struct PromptQueue {
    waiting: VecDeque<Queued>,
    current: Option<u64>,
    next_id: u64,
}

impl PromptQueue {
    /// An empty queue whose first prompt gets id 1.
    pub(super) fn new() -> Self {
        Self {
            waiting: VecDeque::new(),
            current: None,
            next_id: 1,
        }
    }

    /// Takes the next prompt id.
    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// How many prompts a new prompt would wait behind (the running one included).
    pub(super) fn ahead(&self) -> usize {
        self.waiting.len() + usize::from(self.current.is_some())
    }

    /// Queues a prompt under an id from [`Self::next_id`].
    pub(super) fn push(&mut self, prompt_id: u64, text: String, images: Vec<ImageBlock>) {
        self.waiting.push_back((prompt_id, text, images));
    }

    /// How many prompts wait (the running one not included).
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether a turn runs.
    pub(super) fn is_running(&self) -> bool {
        self.current.is_some()
    }

    /// Takes the next prompt off the queue and marks its turn as running.
    pub(super) fn start_next(&mut self) -> Option<Queued> {
        let next = self.waiting.pop_front()?;
        self.current = Some(next.0);
        Some(next)
    }

    /// Ends the running turn, returning its prompt id.
    pub(super) fn finish(&mut self) -> Option<u64> {
        self.current.take()
    }
}
