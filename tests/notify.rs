//! `gitops notify --test` against webhooks on 127.0.0.1: the exact requests each format sends,
//! what the operator is told of each answer, and that the webhook's token shows nowhere.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Machine, Run};
use crate::receiver::{Receiver, Reply, Request};

/// The secret part of every webhook URL here.
const TOKEN: &str = "T0KEN-s3cr3t-abcdefghijklmnopqrstuvwxyz";

/// `gitops notify --test ARGS…` for this machine, with no proxy in the way of 127.0.0.1.
fn notify(m: &Machine, args: &[&str]) -> Command {
    let mut cmd = m.command();
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["notify", "--test"]).args(args);
    cmd
}

fn hook(receiver: &Receiver) -> String {
    receiver.url(&format!("/api/webhooks/123456/{TOKEN}"))
}

/// The parts of a multipart/form-data body: (headers, data).
pub fn multipart(request: &Request) -> Vec<(String, Vec<u8>)> {
    let content_type = request.header("content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let delimiter = format!("--{boundary}");
    let body = &request.body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut parts = Vec::new();
    let mut rest: &[u8] = body;
    assert!(rest.starts_with(delimiter.as_bytes()));
    loop {
        rest = &rest[delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").unwrap();
        let end = find(rest, format!("\r\n{delimiter}").as_bytes()).unwrap();
        let part = &rest[..end];
        let split = find(part, b"\r\n\r\n").unwrap();
        parts.push((
            String::from_utf8(part[..split].to_vec()).unwrap(),
            part[split + 4..].to_vec(),
        ));
        rest = &rest[end + 2..];
    }
    parts
}

fn host() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

fn write_private(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn discord_gets_payload_json_and_a_log_file() {
    let m = Machine::new();
    let receiver = Receiver::start(vec![]);
    let url = hook(&receiver);
    let run = Run::of(&mut notify(
        &m,
        &["--notify-url", &url, "--notify-format", "discord"],
    ))
    .expect(0);
    let shown = receiver.url("");
    assert_eq!(
        run.stdout,
        format!("{shown}  discord  delivered (204)\n"),
        "{}",
        run.stderr
    );
    let requests = receiver.wait_for_requests(1, Duration::from_secs(1));
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/api/webhooks/123456/{TOKEN}"));
    assert!(request
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("gitops/")));
    let parts = multipart(request);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(
        parts[0].0,
        "Content-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json"
    );
    let payload: Value = serde_json::from_slice(&parts[0].1).unwrap();
    let host = host();
    assert_eq!(
        payload["content"],
        format!("🔔 gitops on {host}: test notification")
    );
    let embed = &payload["embeds"][0];
    assert_eq!(embed["title"], format!("{host}: test notification"));
    assert_eq!(embed["color"], 0x2ea043);
    assert_eq!(embed["fields"][0]["name"], "Host");
    assert_eq!(embed["fields"][0]["value"], host);
    assert_eq!(embed["fields"][1]["value"], "test");
    assert_eq!(payload["allowed_mentions"]["parse"], serde_json::json!([]));
    let filename = payload["attachments"][0]["filename"].as_str().unwrap();
    assert!(filename.starts_with("gitops-") && filename.ends_with(".log"));
    assert_eq!(
        parts[1].0,
        format!("Content-Disposition: form-data; name=\"files[0]\"; filename=\"{filename}\"\r\nContent-Type: text/plain; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&parts[1].1).contains("notify --test"));
}

#[test]
fn slack_gets_text_and_blocks_from_the_env_file() {
    let m = Machine::new();
    let receiver = Receiver::start(vec![Reply::Status(
        200,
        vec![("Content-Type".into(), "text/plain".into())],
        b"ok".to_vec(),
    )]);
    let url = receiver.url(&format!("/services/T000/B000/{TOKEN}"));
    std::fs::write(
        &m.config,
        format!("GITOPS_NOTIFY_URL={url}\nGITOPS_NOTIFY_FORMAT=slack\n"),
    )
    .unwrap();
    let run = Run::of(&mut notify(&m, &[])).expect(0);
    assert!(
        run.stdout.contains("slack  delivered (200)"),
        "{}",
        run.stdout
    );
    let request = &receiver.wait_for_requests(1, Duration::from_secs(1))[0];
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let host = host();
    assert_eq!(
        body["text"],
        format!("🔔 gitops on {host}: test notification")
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        format!("{host}: test notification")
    );
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["fields"][0]["text"], format!("*Host*\n{host}"));
    let log = blocks[2]["text"]["text"].as_str().unwrap();
    assert!(log.starts_with("*Log (end)*\n```"), "{log}");
    assert_eq!(blocks.last().unwrap()["type"], "context");
}

#[test]
fn json_is_signed_with_the_key_from_the_secret_file() {
    let m = Machine::new();
    let receiver = Receiver::start(vec![]);
    let key_file = m.dir.path().join("hmac.key");
    write_private(&key_file, "shared-hmac-key\n", 0o600);
    let url = hook(&receiver);
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    Run::of(&mut notify(
        &m,
        &[
            "--notify-url",
            &url,
            "--notify-format",
            "json",
            "--notify-secret-file",
            key_file.to_str().unwrap(),
        ],
    ))
    .expect(0);
    let request = &receiver.wait_for_requests(1, Duration::from_secs(1))[0];
    assert_eq!(request.header("content-type"), Some("application/json"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"shared-hmac-key");
    let expected: String = ring::hmac::sign(&key, &request.body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        request.header("x-gitops-signature"),
        Some(format!("sha256={expected}").as_str())
    );
    let stamp: i64 = request
        .header("x-gitops-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((before..before + 30).contains(&stamp), "{stamp}");
    let event: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(event["version"], 1);
    assert_eq!(event["event"], "test");
    assert_eq!(event["host"], host());
    let id = event["id"].as_str().unwrap();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
}

#[test]
fn a_500_answer_fails_the_test_and_says_so() {
    let m = Machine::new();
    let failing = Receiver::start(vec![Reply::status(500)]);
    let fine = Receiver::start(vec![]);
    let urls = format!("{}, {}", hook(&failing), hook(&fine));
    let run = Run::of(&mut notify(
        &m,
        &["--notify-url", &urls, "--notify-format", "json"],
    ))
    .expect(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    let (a, b) = (failing.url(""), fine.url(""));
    let w = a.len().max(b.len());
    assert_eq!(
        lines[0],
        format!(
            "{a:w$}  json  failed: {a} answered 500 Internal Server Error; a pass would try again"
        )
    );
    assert_eq!(lines[1], format!("{b:w$}  json  delivered (204)"));
    let rejecting = Receiver::start(vec![Reply::Status(
        404,
        vec![("Content-Type".into(), "application/json".into())],
        br#"{"message": "Unknown Webhook", "code": 10015}"#.to_vec(),
    )]);
    let run = Run::of(&mut notify(
        &m,
        &[
            "--notify-url",
            &hook(&rejecting),
            "--notify-format",
            "discord",
        ],
    ))
    .expect(1);
    assert!(
        run.stdout.contains("rejected: http://127.0.0.1:")
            && run
                .stdout
                .contains("answered 404 Not Found: Unknown Webhook"),
        "{}",
        run.stdout
    );
}

#[test]
fn refusing_and_hanging_receivers_fail_within_the_bound() {
    let m = Machine::new();
    let hanging = Receiver::start(vec![Reply::Hang]);
    let refusing = Receiver::refusing(&format!("/api/webhooks/1/{TOKEN}"));
    let urls = format!("{refusing} {}", hook(&hanging));
    let started = Instant::now();
    let child = notify(&m, &["--notify-url", &urls, "--notify-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = Run::within(child, Duration::from_secs(15)).expect(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(took >= Duration::from_secs(4), "took {took:?}: no wait?");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].ends_with("refused the connection; a pass would try again"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with("did not answer within 5s; a pass would try again"),
        "{}",
        lines[1]
    );
    assert_eq!(
        hanging.requests().len(),
        1,
        "the hanging one got the request"
    );
}

#[test]
fn a_url_file_others_can_read_is_refused_with_the_fix() {
    let m = Machine::new();
    let receiver = Receiver::start(vec![]);
    let file = m.dir.path().join("urls");
    write_private(&file, &format!("# team\n{}\n", hook(&receiver)), 0o644);
    let run = Run::of(&mut notify(
        &m,
        &["--notify-url-file", file.to_str().unwrap()],
    ))
    .expect(2);
    let line = run.error_line();
    assert!(
        line.contains("readable by group or others (mode 0644)")
            && line.contains(&format!("chmod 600 {}", file.display())),
        "{line}"
    );
    assert!(receiver.requests().is_empty());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = Run::of(&mut notify(
        &m,
        &[
            "--notify-url-file",
            file.to_str().unwrap(),
            "--notify-format",
            "json",
        ],
    ))
    .expect(0);
    assert!(
        run.stdout.contains("json  delivered (204)"),
        "{}",
        run.stdout
    );
}

#[test]
fn no_destination_is_a_usage_error() {
    let m = Machine::new();
    let run = Run::of(&mut notify(&m, &[])).expect(2);
    assert_eq!(
        run.error_line(),
        "gitops: error: no notification destination: set GITOPS_NOTIFY_URL or --notify-url-file"
    );
    let run = m.run(&["notify"]).expect(2);
    assert!(run.stderr.contains("--test"), "{}", run.stderr);
}

#[test]
fn the_token_shows_in_no_output_and_no_notification() {
    let m = Machine::new();
    let failing = Receiver::start(vec![
        Reply::Status(
            400,
            vec![],
            format!("bad token {TOKEN} at /api/webhooks/123456/{TOKEN}").into_bytes(),
        ),
        Reply::status(503),
    ]);
    let fine = Receiver::start(vec![]);
    let refusing = Receiver::refusing(&format!("/api/webhooks/9/{TOKEN}"));
    let mut everything = String::new();
    let runs: Vec<(Vec<String>, i32)> = vec![
        (vec![hook(&failing), "--notify-format=discord".into()], 1),
        (vec![hook(&failing), "--notify-format=slack".into()], 1),
        (vec![hook(&fine), "--notify-format=json".into()], 0),
        (vec![refusing.clone(), "--notify-format=json".into()], 1),
        (vec![format!("ftp://user:{TOKEN}@127.0.0.1/{TOKEN}")], 2),
        (vec![format!("http://127.0.0.1:99999/{TOKEN}")], 2),
        (vec![format!("https://{TOKEN}@/x")], 2),
    ];
    for (args, code) in runs {
        let mut cmd = notify(&m, &["--notify-url", &args[0]]);
        cmd.args(&args[1..]);
        let run = Run::of(&mut cmd).expect(code);
        everything.push_str(&run.stdout);
        everything.push_str(&run.stderr);
    }
    // Through the variable too, and with the URL in an env file.
    std::fs::write(&m.config, format!("GITOPS_NOTIFY_URL={}\n", hook(&failing))).unwrap();
    let run = Run::of(&mut notify(&m, &["--notify-format", "json"]));
    everything.push_str(&run.stdout);
    everything.push_str(&run.stderr);
    assert!(everything.contains("127.0.0.1"), "{everything}");
    assert!(!everything.contains("T0KEN"), "{everything}");
    assert!(!everything.contains("123456"), "{everything}");
    for request in failing.requests().iter().chain(fine.requests().iter()) {
        assert!(
            !String::from_utf8_lossy(&request.body).contains("T0KEN"),
            "the notification itself holds the token"
        );
    }
}
