//! The journal's priorities: when stderr is the journal, gitops' own lines carry sd-daemon
//! prefixes (`<3>` error, `<4>` warning, `<5>` a request the trigger refused, `<6>` info), so `journalctl -p err -u gitops` lists the
//! failures. The entry point's output (on stdout) never passes through here and stays as it is.

use std::io::Write as _;
use std::sync::OnceLock;

/// Write one of our own lines (it may span several) to stderr, prefixed when stderr is the
/// journal. Errors writing are ignored: a reader that went away must not stop a pass.
pub fn line(text: &str) {
    let out = match to_journal() {
        true => prefixed(text),
        false => format!("{text}\n"),
    };
    // One write per message, so a line is never split between another writer's.
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// The sd-daemon priority of a line of ours, by how it starts.
pub fn priority(text: &str) -> u8 {
    let Some(rest) = text
        .strip_prefix("gitops: ")
        .or_else(|| text.strip_prefix("gitops trigger: "))
    else {
        return 6;
    };
    if rest.starts_with("error:") || rest.starts_with("internal error") {
        3
    } else if rest.starts_with("warning:") {
        4
    } else if rest.starts_with("refused ") {
        // A request the trigger turned away: worth finding (-p notice), not an error of ours.
        5
    } else {
        6
    }
}

/// Every line of `text` with the priority of its first: the journal makes an entry of each
/// line, and the rest of an error (clap's help, say) is part of that error.
pub fn prefixed(text: &str) -> String {
    let level = priority(text);
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split('\n') {
        out.push_str(&format!("<{level}>{line}\n"));
    }
    out
}

/// Whether stderr is the journal, decided once per process: systemd sets `JOURNAL_STREAM` to
/// the device and inode of the stream it connected, and a redirection (`2>file`, a pipe) or a
/// child that inherited the variable has another.
fn to_journal() -> bool {
    static DECIDED: OnceLock<bool> = OnceLock::new();
    *DECIDED.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
            return false;
        };
        // dev_t and ino_t are u64 here, narrower on some other targets.
        #[allow(clippy::useless_conversion)]
        let found = (u64::from(stat.st_dev), u64::from(stat.st_ino));
        stream
            .to_str()
            .and_then(parse_stream)
            .is_some_and(|stream| stream == found)
    })
}

/// `JOURNAL_STREAM`'s "DEVICE:INODE", both decimal.
pub fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_gets_the_priority_of_how_it_starts() {
        let table = [
            (
                "gitops: error: fetch failed",
                "<3>gitops: error: fetch failed\n",
            ),
            (
                "gitops: internal error at x.rs:1: oops (please report it)",
                "<3>gitops: internal error at x.rs:1: oops (please report it)\n",
            ),
            (
                "gitops: warning: could not write the metrics",
                "<4>gitops: warning: could not write the metrics\n",
            ),
            (
                "gitops: applying abc (main)",
                "<6>gitops: applying abc (main)\n",
            ),
            ("Usage: gitops\n  sync", "<6>Usage: gitops\n<6>  sync\n"),
            ("gitops: error: a\nb", "<3>gitops: error: a\n<3>b\n"),
            ("gitops: errors", "<6>gitops: errors\n"),
            (
                "gitops trigger: error: could not start a pass",
                "<3>gitops trigger: error: could not start a pass\n",
            ),
            (
                "gitops trigger: refused a request from 192.0.2.1: signature (401)",
                "<5>gitops trigger: refused a request from 192.0.2.1: signature (401)\n",
            ),
            (
                "gitops trigger: started: github request from 192.0.2.1",
                "<6>gitops trigger: started: github request from 192.0.2.1\n",
            ),
        ];
        for (text, want) in table {
            assert_eq!(prefixed(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_stream_is_device_and_inode() {
        let table = [
            ("8:1234", Some((8, 1234))),
            ("65024:12\n", Some((65024, 12))),
            ("8", None),
            ("a:1", None),
            ("8:-1", None),
            ("", None),
        ];
        for (value, want) in table {
            assert_eq!(parse_stream(value), want, "{value:?}");
        }
    }
}
