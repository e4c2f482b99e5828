//! The cron entry and the OpenRC script, for machines without systemd timers.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::manifest::fingerprint;
use super::units::CRON_FILE;

/// The cron entry: every 5 minutes at a per-machine minute offset, one pass at a time.
pub fn cron_entry(minute: u8) -> String {
    format!(
        "# Written by `gitops install-units --init cron`: a gitops pass every 5 minutes, starting at\n\
         # minute {minute} so that machines installed apart do not all fetch in the same minute.\n\
         # flock -n skips a tick while a long apply still runs; -o closes flock's lock before gitops\n\
         # starts, so a daemon the entry point leaves does not hold it and stop every later tick\n\
         # (gitops holds its own pass lock). gitops records every outcome itself (gitops status),\n\
         # so its output only goes to syslog.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {minute}-59/5 * * * * root flock -n -o /run/gitops.cron.lock /usr/bin/gitops sync 2>&1 | logger -t gitops\n"
    )
}

/// OpenRC: a pass once the network is up at boot; the cron entry does the periodic ones.
pub const OPENRC_SCRIPT: &str = r#"#!/sbin/openrc-run
# Written by `gitops install-units --init openrc`: one gitops pass at boot, once the network is
# up. The periodic passes come from /etc/cron.d/gitops.
description="gitops pass: apply the configuration repository's new commits"

depend() {
	need net
	after firewall
}

start() {
	# In the background: a long apply must not hold up the rest of the boot.
	ebegin "Starting a gitops pass"
	( /usr/bin/gitops sync 2>&1 | logger -t gitops ) &
	eend 0
}
"#;

pub(super) fn existing_cron_minute(root: &Path, manifest: &BTreeMap<String, String>) -> Option<u8> {
    let text = fs::read_to_string(root.join(CRON_FILE)).ok()?;
    if manifest.get(CRON_FILE) != Some(&fingerprint(text.as_bytes())) {
        return None;
    }
    let line = text.lines().find(|l| l.contains("/usr/bin/gitops sync"))?;
    line.split('-').next()?.parse().ok().filter(|m| *m < 5)
}

pub(super) fn random_minute() -> u8 {
    let mut byte = [0u8; 1];
    let random = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut byte));
    match random {
        Ok(()) => byte[0] % 5,
        Err(_) => (std::process::id() % 5) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_entry_has_five_fields_a_user_and_the_command() {
        for minute in 0..5 {
            let text = cron_entry(minute);
            let line = text.lines().find(|l| l.contains("gitops sync")).unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[0], format!("{minute}-59/5"));
            assert_eq!(&fields[1..5], ["*", "*", "*", "*"]);
            assert_eq!(fields[5], "root");
        }
    }
}
