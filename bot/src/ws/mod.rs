//! The bot's WebSockets: [`link`] is the daemon link (`/ws/daemon`), which feeds the
//! ingest task; [`dashboard`] is the live feed for browsers (`/ws/dashboard`). Neither
//! knows the other.

pub mod dashboard;
pub mod link;

pub use dashboard::dashboard_ws;
pub use link::daemon_ws;
