//! `--metrics-dir`: gitops.prom parses as Prometheus text exposition after every pass, applied
//! or failed, its counters only grow, `status --prometheus` prints the same text, and a
//! metrics file that cannot be written never changes the pass's exit code.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::{Machine, Run};
use crate::support::{GitDaemon, Upstream};

/// One sample: its labels, in order, and its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    labels: Labels,
    value: f64,
}

/// A metric family: its TYPE and samples (HELP is required, its text not kept).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Go's ParseFloat as Prometheus reads a value: decimal or exponent, or ±Inf, NaN.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t if t
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            t.parse().map_err(|_| format!("bad value {t:?}"))
        }
        t => Err(format!("bad value {t:?}")),
    }
}

type Labels = Vec<(String, String)>;

/// `{a="x",b="y\"z"}` into pairs; the text after the closing brace is returned too.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (i, '"') => break i,
                (_, '\n') => return Err("raw line feed in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ,".into());
        }
    }
}

/// A strict reader of the text exposition format (0.0.4) as gitops writes it: every family has
/// HELP then TYPE before its samples, its samples together, names and labels well formed, float
/// values, no timestamps, counters named *_total and never negative, no sample twice.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped: Option<String> = None;
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("no final line feed".into());
    }
    for line in text.lines() {
        let fail = |why: &str| format!("{why}: {line:?}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest
                .split_once(' ')
                .ok_or_else(|| fail("HELP without text"))?;
            if !valid_metric_name(name) || families.contains_key(name) {
                return Err(fail("bad or repeated family"));
            }
            helped = Some(name.to_string());
            current = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| fail("TYPE without type"))?;
            if helped.as_deref() != Some(name) {
                return Err(fail("TYPE not right after its HELP"));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(fail("unknown type"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(fail("counter not named *_total"));
            }
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    samples: Vec::new(),
                },
            );
            helped = None;
            current = Some(name.to_string());
        } else if line.starts_with('#') || line.is_empty() {
            return Err(fail("stray comment or empty line"));
        } else {
            let name_end = line.find(['{', ' ']).ok_or_else(|| fail("no value"))?;
            let name = &line[..name_end];
            if current.as_deref() != Some(name) {
                return Err(fail(
                    "sample outside its family (or before its HELP and TYPE)",
                ));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(|e| fail(&e))?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| fail("no space before the value"))?;
            if value.contains(' ') {
                return Err(fail("a timestamp or trailing text"));
            }
            let value = parse_value(value).map_err(|e| fail(&e))?;
            let family = families.get_mut(name).ok_or_else(|| fail("no family"))?;
            if family.kind == "counter" && (value.is_nan() || value < 0.0) {
                return Err(fail("negative counter"));
            }
            if family.samples.iter().any(|s| s.labels == labels) {
                return Err(fail("sample twice"));
            }
            family.samples.push(Sample { labels, value });
        }
    }
    if helped.is_some() {
        return Err("HELP without TYPE".into());
    }
    Ok(families)
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\na_total{x=\"b\"} 2.5e3\n# HELP g G.\n# TYPE g gauge\ng -1\n";
    let parsed = parse_exposition(good).unwrap();
    assert_eq!(parsed["a_total"].samples[0].labels[0].1, "q\"\\\n");
    assert_eq!(parsed["g"].samples[0].value, -1.0);
    for bad in [
        "a 1\n",                                         // no HELP/TYPE
        "# TYPE a gauge\na 1\n",                         // no HELP
        "# HELP a A.\n# TYPE a gauge\na 1 1700000000\n", // timestamp
        "# HELP a A.\n# TYPE a counter\na 1\n",          // counter without _total
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",
        "# HELP a A.\n# TYPE a gauge\na{x=\"1} 1\n", // unterminated
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n", // bad escape
        "# HELP a A.\n# TYPE a gauge\na{1x=\"1\"} 1\n", // bad label name
        "# HELP a A.\n# TYPE a gauge\na one\n",      // not a float
        "# HELP a A.\n# TYPE a gauge\nb 1\n",        // other family
        "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n",     // bad name
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",   // twice
        "# HELP a A.\n# TYPE a gauge\na 1",          // no final line feed
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

/// The one sample of `name` with these labels.
fn value(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let family = families
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {families:?}"));
    family
        .samples
        .iter()
        .find(|s| {
            s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {:?}", family.samples))
        .value
}

const OUTCOMES: [&str; 7] = [
    "up-to-date",
    "applied",
    "apply-failed",
    "fetch-failed",
    "refused",
    "untrusted",
    "config-error",
];

/// The metrics file: parsed, its mode checked, and what status --prometheus prints compared.
fn read_metrics(m: &Machine, dir: &Path, status_code: i32) -> BTreeMap<String, Family> {
    let file = dir.join("gitops.prom");
    let text = std::fs::read_to_string(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter runs as its own user");
    let printed = m.run(&["status", "--prometheus"]).expect(status_code);
    assert_eq!(printed.stdout, text, "status --prometheus prints the file");
    let names = crate::harness::names(dir);
    assert_eq!(names, ["gitops.prom"], "no temporary file left");
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn committer_time(up: &Upstream, commit: &str) -> f64 {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(up.bare())
        .args(["log", "-1", "--format=%ct", commit])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_metrics_parse_after_every_pass_and_the_counters_only_grow() {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", "#!/bin/sh\necho applied\n")], "First");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    let dir = m.dir.path().join("metrics");
    std::fs::create_dir(&dir).unwrap();
    let dir_arg = dir.to_str().unwrap();

    m.sync(&url, &["--metrics-dir", dir_arg]).expect(0);
    let applied = read_metrics(&m, &dir, 0);
    assert_eq!(value(&applied, "gitops_last_pass_success", &[]), 1.0);
    assert_eq!(
        value(&applied, "gitops_passes_total", &[("outcome", "applied")]),
        1.0
    );
    for outcome in OUTCOMES.iter().filter(|o| **o != "applied") {
        assert_eq!(
            value(&applied, "gitops_passes_total", &[("outcome", outcome)]),
            0.0
        );
    }
    assert_eq!(
        value(
            &applied,
            "gitops_applied_commit_info",
            &[("commit", &first), ("branch", "main")]
        ),
        1.0
    );
    assert_eq!(
        value(&applied, "gitops_applied_commit_timestamp_seconds", &[]),
        committer_time(&up, &first)
    );
    assert_eq!(
        value(&applied, "gitops_last_success_timestamp_seconds", &[]),
        value(&applied, "gitops_last_pass_timestamp_seconds", &[])
    );
    assert_eq!(
        value(
            &applied,
            "gitops_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(value(&applied, "gitops_pass_duration_seconds", &[]) >= 0.0);
    assert!(value(&applied, "gitops_apply_duration_seconds", &[]) >= 0.0);
    assert_eq!(value(&applied, "gitops_consecutive_failures", &[]), 0.0);
    assert_eq!(value(&applied, "gitops_pending_attempts", &[]), 0.0);
    assert_eq!(value(&applied, "gitops_notify_outbox_events", &[]), 0.0);
    assert_eq!(value(&applied, "gitops_notify_dropped_total", &[]), 0.0);

    // A failing commit, tried twice, the variable naming the directory this time.
    up.commit(&[("run.sh", "#!/bin/sh\necho broken\nexit 3\n")], "Break");
    let mut history = vec![applied];
    for attempt in 1..=2 {
        let mut cmd = m.command();
        cmd.env("GITOPS_METRICS_DIR", &dir)
            .args(["sync", "--repo-url", &url]);
        Run::of(&mut cmd).expect(1);
        let failed = read_metrics(&m, &dir, 1);
        assert_eq!(value(&failed, "gitops_last_pass_success", &[]), 0.0);
        assert_eq!(
            value(
                &failed,
                "gitops_passes_total",
                &[("outcome", "apply-failed")]
            ),
            f64::from(attempt)
        );
        assert_eq!(
            value(&failed, "gitops_pending_attempts", &[]),
            f64::from(attempt)
        );
        assert_eq!(
            value(&failed, "gitops_consecutive_failures", &[]),
            f64::from(attempt)
        );
        // What is applied is still the first commit, and so is the last success.
        assert_eq!(
            value(
                &failed,
                "gitops_applied_commit_info",
                &[("commit", &first), ("branch", "main")]
            ),
            1.0
        );
        assert_eq!(
            value(&failed, "gitops_last_success_timestamp_seconds", &[]),
            value(&history[0], "gitops_last_success_timestamp_seconds", &[])
        );
        history.push(failed);
    }

    // Fixed: applied, then up to date.
    up.commit(&[("run.sh", "#!/bin/sh\necho fixed\n")], "Fix");
    m.sync(&url, &["--metrics-dir", dir_arg]).expect(0);
    history.push(read_metrics(&m, &dir, 0));
    m.sync(&url, &["--metrics-dir", dir_arg]).expect(0);
    let last = read_metrics(&m, &dir, 0);
    assert_eq!(
        value(&last, "gitops_passes_total", &[("outcome", "up-to-date")]),
        1.0
    );
    assert_eq!(
        value(&last, "gitops_passes_total", &[("outcome", "applied")]),
        2.0
    );
    assert_eq!(value(&last, "gitops_pending_attempts", &[]), 0.0);
    history.push(last);
    for pair in history.windows(2) {
        for outcome in OUTCOMES {
            let (before, after) = (
                value(&pair[0], "gitops_passes_total", &[("outcome", outcome)]),
                value(&pair[1], "gitops_passes_total", &[("outcome", outcome)]),
            );
            assert!(after >= before, "{outcome}: {before} then {after}");
        }
    }
}

#[test]
fn a_metrics_dir_that_is_not_a_directory_is_a_usage_error() {
    let (_up, _daemon, url) = crate::harness::served();
    let m = Machine::new();
    let missing = m.dir.path().join("no-such-dir");
    let run = m
        .sync(&url, &["--metrics-dir", missing.to_str().unwrap()])
        .expect(2);
    let line = run.error_line();
    assert!(
        line.contains("--metrics-dir") && line.contains("does not exist"),
        "{line}"
    );
    assert!(m.runs().is_empty(), "nothing ran");
    let file = m.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut cmd = m.command();
    cmd.env("GITOPS_METRICS_DIR", &file)
        .args(["sync", "--repo-url", &url]);
    let line = Run::of(&mut cmd).expect(2).error_line();
    assert!(line.contains("is not a directory"), "{line}");
}

#[test]
fn metrics_that_cannot_be_written_leave_the_pass_s_exit_code_alone() {
    let (_up, _daemon, url) = crate::harness::served();
    let m = Machine::new();
    let dir = m.dir.path().join("metrics");
    // A directory where the file goes: the rename fails, even for root.
    std::fs::create_dir_all(dir.join("gitops.prom")).unwrap();
    let run = m
        .sync(&url, &["--metrics-dir", dir.to_str().unwrap()])
        .expect(0);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("gitops: warning: could not write the metrics")),
        "{}",
        run.stderr
    );
    assert_eq!(m.state_json()["last_pass"]["outcome"], "applied");
    assert_eq!(
        crate::harness::names(&dir),
        ["gitops.prom"],
        "the temporary file is removed"
    );
}
