//! `gitops install-units`: units, env file, cron and OpenRC entries, into a live system or an
//! image's root.

mod textdiff;
mod units;

pub use units::{run, Init, Request};
