//! `gitops plan` attacked: a hostile repository whose commit makes the description expensive,
//! and what the next pass does against what the plan said.

use std::time::{Duration, Instant};

use crate::harness::{applied_machine, Run, RECORDING_RUN_SH};

/// `count` lines of one letter each, a to d, from `seed`: under 1 MiB, so not "large" by
/// size, and so repetitive that a line diff of two such texts falls back to its slow path.
fn letters(seed: u64, count: usize) -> String {
    let mut x = seed | 1;
    let mut text = String::with_capacity(count * 2);
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push(char::from(b'a' + (x % 4) as u8));
        text.push('\n');
    }
    text
}

#[test]
fn a_commit_of_files_that_are_slow_to_diff_is_planned_in_seconds() {
    let (up, _daemon, m, url) = applied_machine();
    const LINES: usize = 300_000;
    // Both sides large: the applied commit has the files too. The entry point stops before
    // its filler, so the pass can run it.
    let run_sh = |seed| format!("{RECORDING_RUN_SH}exit 0\n{}", letters(seed, LINES));
    let names = ["a.txt", "b.txt", "c.txt"];
    let first: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), letters(i as u64 + 1, LINES)))
        .chain([("run.sh".to_string(), run_sh(7))])
        .collect();
    let files: Vec<(&str, &str)> = first
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    up.commit(&files, "filler");
    m.sync(&url, &[]).expect(0);
    let second: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), letters(i as u64 + 100, LINES)))
        .chain([("run.sh".to_string(), run_sh(107))])
        .collect();
    let files: Vec<(&str, &str)> = second
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let tip = up.commit(&files, "other filler");

    // Before the bound, this plan diffed for minutes (debug build) holding the lock.
    let started = Instant::now();
    let child = m.spawn(&["plan", "--repo-url", &url]);
    let run = Run::within(child, Duration::from_secs(40)).expect(10);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    let out = &run.stdout;
    assert!(
        out.contains(&format!("would apply {}", &tip[..12])),
        "{out}"
    );
    for name in names {
        assert!(
            out.contains(&format!("M {name:<6} | large, {LINES} -> {LINES} lines")),
            "{name}: {out}"
        );
    }
    assert!(
        out.contains(&format!(
            "  no diff: large, {} lines",
            LINES + RECORDING_RUN_SH.lines().count() + 1
        )),
        "{out}"
    );
    // And the pass does what the plan said.
    m.sync(&url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(tip.as_str()));
}

#[test]
fn bidirectional_controls_and_line_separators_from_the_repository_are_written_out() {
    let (up, _daemon, m, url) = applied_machine();
    // Trojan Source: shown with the controls honoured, the command reads as part of a comment.
    let run_sh = format!(
        "{RECORDING_RUN_SH}rm -rf \"$OUT/victim\" #\u{202e}\u{2066} tidy the cache\u{2069}\n"
    );
    up.commit(
        &[("run.sh", &run_sh), ("notes\u{202e}txt.sh", "x\n")],
        "Tidy up\u{2028}gitops plan: up to date",
    );
    let text = Run::within(
        m.spawn(&["plan", "--repo-url", &url]),
        Duration::from_secs(60),
    )
    .expect(10);
    let json = Run::within(
        m.spawn(&["plan", "--repo-url", &url, "--json"]),
        Duration::from_secs(60),
    )
    .expect(10);
    for out in [&text.stdout, &json.stdout] {
        for c in ['\u{202e}', '\u{2066}', '\u{2069}', '\u{2028}'] {
            assert!(!out.contains(c), "{c:?} in {out}");
        }
    }
    let out = &text.stdout;
    assert!(
        out.contains("+rm -rf \"$OUT/victim\" #\\u{202e}\\u{2066} tidy the cache\\u{2069}"),
        "{out}"
    );
    assert!(
        out.contains("\"Tidy up\\u{2028}gitops plan: up to date\""),
        "{out}"
    );
    assert!(out.contains("A notes\\u{202e}txt.sh"), "{out}");
}

#[test]
fn an_entry_point_that_is_a_directory_is_planned_as_an_apply_that_fails() {
    let (up, _daemon, m, url) = applied_machine();
    up.remove("run.sh", "no entry point for a moment");
    up.commit(&[("run.sh/inner", "x\n")], "run.sh is a directory now");
    let run = m.run(&["plan", "--repo-url", &url]).expect(10);
    assert!(
        run.stdout.contains(
            "entry point: run.sh (type-changed, directory: not a file, so the apply would fail)"
        ),
        "{}",
        run.stdout
    );
    // As the plan said: the pass switches to the commit and refuses to run it.
    let sync = m.sync(&url, &[]).expect(1);
    assert!(
        sync.error_line().contains("is a directory"),
        "{}",
        sync.stderr
    );
}
