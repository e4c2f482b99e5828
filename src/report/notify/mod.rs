//! Notifications: the events a pass tells, their formats (discord, slack, json), how one is
//! delivered, and the outbox that keeps each event until every destination has it.

pub mod deliver;
pub mod event;
pub mod format;
pub mod options;
pub mod outbox;
pub mod send;
pub mod test;

pub use deliver::{deliver, queue_for_pass};
