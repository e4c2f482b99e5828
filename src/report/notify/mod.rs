//! Notifications: the events a pass tells, their formats (discord, slack, json), and the outbox
//! that keeps each event until every destination has it.

pub mod event;
pub mod outbox;
