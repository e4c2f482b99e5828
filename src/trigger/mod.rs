//! `gitops trigger`: a forge's webhook, served on the socket systemd passes in; an
//! authenticated push starts a pass (through the path unit), and nothing else ever happens.

pub mod options;

use anyhow::Result;

use crate::exit::{fail, Exit};

pub fn run(_args: &options::Args) -> Result<Exit> {
    Err(fail(Exit::Usage, "gitops trigger is being built"))
}
