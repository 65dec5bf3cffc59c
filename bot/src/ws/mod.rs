//! The bot's WebSockets: [`link`] is the daemon link (`/ws/daemon`), which feeds the
//! ingest task; [`dashboard`] is the live feed for browsers (`/ws/dashboard`); [`replica`]
//! accepts another replica's direct link (`/ws/replica`). None knows the others.

pub mod dashboard;
pub mod link;
pub mod replica;

pub use dashboard::dashboard_ws;
pub use link::daemon_ws;
pub use replica::replica_ws;
