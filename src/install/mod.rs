//! `gitops install-units`: units, env file, cron and OpenRC entries, into a live system or an
//! image's root.

mod cron;
mod envfile;
mod manifest;
mod textdiff;
mod trigger;
mod units;

pub use trigger::Args as TriggerArgs;
pub use units::{run, Init, Request};
