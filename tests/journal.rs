//! With stderr the journal (`JOURNAL_STREAM` names its device and inode), gitops' own lines
//! carry sd-daemon priorities; the entry point's output passes through as it was written.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use crate::harness::Machine;
use crate::support::{GitDaemon, Upstream};

/// Run `gitops ARGS` with stdout and stderr both going to `file` (as systemd connects both to
/// the journal), `JOURNAL_STREAM` set by `stream` from the file's device and inode. Returns
/// the exit code and what the file got.
fn run_into(
    m: &Machine,
    file: &Path,
    args: &[&str],
    stream: impl Fn(u64, u64) -> String,
) -> (i32, String) {
    let out = File::options()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let meta = out.metadata().unwrap();
    let mut cmd = m.command();
    cmd.args(args)
        .env("JOURNAL_STREAM", stream(meta.dev(), meta.ino()))
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let code = cmd.status().unwrap().code().unwrap_or(-1);
    (code, std::fs::read_to_string(file).unwrap())
}

/// A machine whose state.json is unreadable (a warning on the next pass), and an upstream whose
/// entry point writes lines that look like ours and like priorities.
fn machine_with_a_warning_coming() -> (Upstream, GitDaemon, Machine, String) {
    let up = Upstream::new();
    up.commit(
        &[(
            "run.sh",
            "#!/bin/sh\necho 'hello from run.sh'\necho 'gitops: error: not really ours'\necho '<2>raw'\n",
        )],
        "Greet",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&m.state)
        .unwrap();
    std::fs::write(m.state.join("state.json"), "{\"applied\": tru").unwrap();
    (up, daemon, m, url)
}

#[test]
fn our_lines_carry_priorities_when_stderr_is_the_journal() {
    let (_up, _daemon, m, url) = machine_with_a_warning_coming();
    let journal = m.dir.path().join("journal");
    let (code, text) = run_into(&m, &journal, &["sync", "--repo-url", &url], |dev, ino| {
        format!("{dev}:{ino}")
    });
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>gitops: warning: ") && l.contains("unreadable")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<6>gitops: applying ")),
        "{text}"
    );
    // The entry point's own output, exactly as it wrote it.
    for raw in [
        "hello from run.sh",
        "gitops: error: not really ours",
        "<2>raw",
    ] {
        assert!(lines.contains(&raw), "{raw:?} changed in:\n{text}");
    }
    // Every other line is ours and has a priority.
    for line in &lines {
        let ours = ![
            "hello from run.sh",
            "gitops: error: not really ours",
            "<2>raw",
        ]
        .contains(line);
        if ours {
            assert!(
                line.starts_with("<3>") || line.starts_with("<4>") || line.starts_with("<6>"),
                "{line:?} in:\n{text}"
            );
        }
    }

    // The error line that ends a failed command.
    let journal = m.dir.path().join("journal-error");
    let missing = m.dir.path().join("no_known_hosts");
    let (code, text) = run_into(
        &m,
        &journal,
        &[
            "sync",
            "--repo-url",
            &url,
            "--known-hosts",
            missing.to_str().unwrap(),
        ],
        |dev, ino| format!("{dev}:{ino}"),
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("<3>gitops: error: ") && l.contains("known_hosts")),
        "{text}"
    );
}

#[test]
fn no_priorities_when_stderr_is_not_the_journal() {
    let (_up, _daemon, m, url) = machine_with_a_warning_coming();
    let file = m.dir.path().join("not-the-journal");
    // Another file's stream (the journal connected to a parent whose stderr was redirected).
    let (code, text) = run_into(&m, &file, &["sync", "--repo-url", &url], |dev, ino| {
        format!("{dev}:{}", ino + 1)
    });
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("gitops: warning: "), "{text}");
    assert!(text.contains("gitops: applying "), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("<3>") || l.starts_with("<4>") || l.starts_with("<6>")),
        "{text}"
    );
    // Garbage in the variable: the same.
    let file = m.dir.path().join("garbage");
    let (code, text) = run_into(&m, &file, &["sync", "--repo-url", &url], |_, _| {
        "journal".to_string()
    });
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("gitops: up to date"), "{text}");
    assert!(!text.contains("<6>"), "{text}");
}
