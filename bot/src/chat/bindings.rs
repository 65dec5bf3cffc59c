//! Which chat places show which sessions: the `chat_bindings` rows of one platform, kept
//! in memory both ways (place → binding for inbound messages, session → places for the
//! outbound workers) and written through to SQLite when a command binds a place.
//!
//! [`super::commands`] binds; the core, [`super::prompts`] and [`super::outbound`] read.

use std::collections::HashMap;
use std::sync::Mutex;

use common::ids::SessionId;

use super::{Place, lock};
use crate::db::{ChatBinding, Db, DbError};

/// The place a binding is for.
fn place_of(b: &ChatBinding) -> Place {
    Place {
        chat: b.chat_id.clone(),
        thread: b.thread_id.clone(),
    }
}

/// The two maps, changed together.
#[derive(Default)]
struct Maps {
    by_place: HashMap<Place, ChatBinding>,
    by_session: HashMap<SessionId, Vec<Place>>,
}

impl Maps {
    /// Binds `b`'s place, moving it off the session it showed before.
    fn insert(&mut self, b: ChatBinding) {
        let place = place_of(&b);
        if let Some(old) = self.by_place.insert(place.clone(), b.clone())
            && let Some(v) = self.by_session.get_mut(&old.session_id)
        {
            v.retain(|p| p != &place);
        }
        self.by_session.entry(b.session_id).or_default().push(place);
    }
}

/// The bindings of one platform (see the module docs).
pub struct Bindings {
    db: Db,
    maps: Mutex<Maps>,
}

impl Bindings {
    /// The bindings stored for `platform`.
    pub async fn load(db: Db, platform: &str) -> Result<Self, DbError> {
        let mut maps = Maps::default();
        for b in db.chat_bindings(platform).await? {
            maps.insert(b);
        }
        Ok(Self {
            db,
            maps: Mutex::new(maps),
        })
    }

    /// Stores `b` and binds its place in memory (replacing what the place showed).
    pub async fn bind(&self, b: ChatBinding) -> Result<(), DbError> {
        self.db.chat_bind(&b).await?;
        lock(&self.maps).insert(b);
        Ok(())
    }

    /// The binding of `place`, if any.
    pub fn get(&self, place: &Place) -> Option<ChatBinding> {
        lock(&self.maps).by_place.get(place).cloned()
    }

    /// Every place that shows `session`.
    pub fn places_of(&self, session: &SessionId) -> Vec<Place> {
        lock(&self.maps)
            .by_session
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    /// The thread that shows `session` in `chat` (one the bot opened from it, or a topic of
    /// it), if any.
    pub fn thread_of(&self, session: &SessionId, chat: &str) -> Option<Place> {
        let maps = lock(&self.maps);
        let places = maps.by_session.get(session)?;
        places
            .iter()
            .find(|p| {
                maps.by_place.get(*p).is_some_and(|b| {
                    b.parent.as_deref() == Some(chat)
                        || (b.chat_id == chat && b.thread_id.is_some())
                })
            })
            .cloned()
    }

    /// True when some place shows `session`.
    pub fn is_bound(&self, session: &SessionId) -> bool {
        lock(&self.maps).by_session.contains_key(session)
    }

    /// Every bound place with the time (Unix ms) it was bound.
    pub fn all(&self) -> Vec<(Place, u64)> {
        lock(&self.maps)
            .by_place
            .iter()
            .map(|(p, b)| (p.clone(), b.created_ms))
            .collect()
    }
}
