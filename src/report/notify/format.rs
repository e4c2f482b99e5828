//! How an event looks to each kind of receiver: pure functions from an `Event` (and the apply's
//! log) to the bytes and headers of one HTTP request. Nothing here reads a file or a clock.

use serde_json::{json, Value};

use super::event::{Event, Kind};

/// The receiver's kind, which decides the body's shape.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Discord or Slack by the URL's host and path, else json
    Auto,
    /// A Discord webhook: a message with an embed, the log attached
    Discord,
    /// A Slack incoming webhook: blocks with the same facts and the log's tail
    Slack,
    /// The event itself (version 1), signed with --notify-secret-file
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Discord => "discord",
            Format::Slack => "slack",
            Format::Json => "json",
        }
    }

    /// What `auto` means for a URL's host (lower case) and path: Discord's and Slack's own
    /// webhook addresses, json for everything else.
    pub fn detect(host: &str, path: &str) -> Format {
        let host = host.trim_end_matches('.');
        let discord = ["discord.com", "discordapp.com"]
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")));
        if discord && path.starts_with("/api/webhooks/") {
            Format::Discord
        } else if host == "hooks.slack.com" {
            Format::Slack
        } else {
            Format::Json
        }
    }
}

/// The most of the log Discord gets as an attachment.
pub const LOG_ATTACHMENT_BYTES: usize = 1024 * 1024;

// Discord's limits (https://discord.com/developers/docs/resources/message).
const DISCORD_CONTENT: usize = 2000;
const DISCORD_TITLE: usize = 256;
const DISCORD_FIELD_NAME: usize = 256;
const DISCORD_FIELD_VALUE: usize = 1024;
const DISCORD_FOOTER: usize = 2048;
const DISCORD_EMBED_TOTAL: usize = 6000;

// Slack's limits (https://api.slack.com/reference/block-kit/blocks).
const SLACK_HEADER: usize = 150;
const SLACK_SECTION: usize = 3000;
const SLACK_FIELD: usize = 2000;
const SLACK_TEXT: usize = 3000;

const GREEN: u32 = 0x2e_a0_43;
const RED: u32 = 0xd7_3a_49;

/// One request's body and the headers that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// Extra headers (the json format's signature).
    pub headers: Vec<(String, String)>,
}

/// What rendering needs beyond the event, passed in so that rendering stays pure.
pub struct Extras<'a> {
    /// The log to attach (Discord) or quote the end of (Slack), already cut to at most
    /// `LOG_ATTACHMENT_BYTES` at a line start; else the event's own `log_tail` is used.
    pub log: Option<&'a [u8]>,
    /// The HMAC key of the json format.
    pub secret: Option<&'a [u8]>,
    /// Unix seconds, for `X-Gitops-Timestamp`.
    pub now_unix: i64,
    /// The multipart boundary (random: the log must not be able to end the part).
    pub boundary: &'a str,
}

/// The request body for `format` (never `Auto`: it is resolved per URL beforehand).
pub fn render(format: Format, event: &Event, extras: &Extras) -> Body {
    let log = extras
        .log
        .or(event.log_tail.as_deref().map(str::as_bytes))
        .filter(|l| !l.is_empty());
    match format {
        Format::Discord => discord(event, log, extras.boundary),
        Format::Slack => slack(event, log),
        Format::Auto | Format::Json => json_body(event, extras.secret, extras.now_unix),
    }
}

/// The first 7 characters of a commit id.
fn short(commit: &str) -> &str {
    let end = commit
        .char_indices()
        .nth(7)
        .map_or(commit.len(), |(i, _)| i);
    &commit[..end]
}

/// "applied", "apply failed (reminder)", …: what happened, for a title.
fn what(event: &Event) -> String {
    let what = match event.event {
        Kind::Applied => "applied",
        Kind::ApplyFailed => "apply failed",
        Kind::Refused => "refused a rewritten branch",
        Kind::Untrusted => "refused a commit not signed by an allowed key",
        Kind::ConfigError => "configuration error",
        Kind::FetchFailed => "fetch failed",
        Kind::Recovered => "recovered",
        Kind::Test => "test notification",
        Kind::Reboot => "rebooting as the repository requests",
        Kind::RebootFailed => "reboot failed",
        Kind::RebootInvalid => "reboot request unreadable",
        Kind::Stale => "branch stale: no new commit for too long",
        Kind::Reverted => "apply failed, reverted to the last applied commit",
        Kind::RevertFailed => "apply failed, and reverting failed too",
        Kind::Suspended => "applies suspended",
        Kind::Resumed => "applies resumed",
        Kind::SuspendBlocked => "new commit held back: applies are suspended",
    };
    if event.reminder {
        format!("{what} (reminder)")
    } else {
        what.to_string()
    }
}

/// One line that says it all: chat previews and Slack's fallback text show it.
fn headline(event: &Event) -> String {
    let mark = if event.event.is_failure() {
        "❌"
    } else if event.event == Kind::Test {
        "🔔"
    } else if matches!(event.event, Kind::Suspended | Kind::SuspendBlocked) {
        "⏸️"
    } else if event.event == Kind::Reboot {
        "🔁"
    } else {
        "✅"
    };
    let mut line = format!("{mark} gitops on {}: {}", event.host, what(event));
    if let Some(commit) = &event.commit {
        line.push_str(&format!(" {}", short(commit)));
        if let Some(subject) = &event.subject {
            line.push_str(&format!(" \"{subject}\""));
        }
    }
    line
}

/// The facts every format shows, as (name, value) pairs: those the event has.
fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Host", event.host.clone()),
        ("Outcome", event.outcome.clone()),
    ];
    if let Some(commit) = &event.commit {
        let value = match &event.subject {
            Some(subject) => format!("{} {subject}", short(commit)),
            None => short(commit).to_string(),
        };
        facts.push(("Commit", value));
    }
    if let Some(previous) = &event.previous_commit {
        facts.push(("Previous commit", short(previous).to_string()));
    }
    if let Some(attempt) = event.attempt {
        facts.push(("Attempt", attempt.to_string()));
    }
    facts.push(("Duration", duration(event.duration_seconds)));
    facts.push(("Exit code", event.exit_code.to_string()));
    if let Some(error) = &event.error {
        facts.push(("Error", error.clone()));
    }
    facts
}

fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".to_string();
    }
    if seconds < 1.0 {
        // A usual apply is quicker than a second: "0.0s" would say it took nothing.
        format!("{}ms", (seconds * 1000.0).round() as u64)
    } else if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = seconds.round() as u64;
        format!("{}min {}s", whole / 60, whole % 60)
    }
}

/// `text` in at most `max` UTF-16 units (what Discord and Slack count; never fewer units than
/// characters), cut on a character boundary, an ellipsis marking the cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() > max - 1 {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// The end of `text` in at most `max` UTF-16 units, starting at a line start when it was cut
/// (unless the last line alone is too long: then its end).
pub fn tail(text: &str, max: usize) -> &str {
    if text.encode_utf16().count() <= max {
        return text;
    }
    let mut units = 0;
    let mut start = text.len();
    for (i, c) in text.char_indices().rev() {
        if units + c.len_utf16() > max {
            break;
        }
        units += c.len_utf16();
        start = i;
    }
    let kept = &text[start..];
    match kept.find('\n') {
        Some(nl) if nl + 1 < kept.len() => &kept[nl + 1..],
        _ => kept,
    }
}

/// The last `max` bytes of a log, starting at a line start when the log was longer (so the
/// first line shown is whole), or when `cut_before` says the bytes were already cut.
pub fn log_tail(log: &[u8], max: usize, cut_before: bool) -> &[u8] {
    let cut = cut_before || log.len() > max;
    let kept = &log[log.len().saturating_sub(max)..];
    if !cut {
        return kept;
    }
    match kept.iter().position(|b| *b == b'\n') {
        Some(nl) if nl + 1 < kept.len() => &kept[nl + 1..],
        _ => kept,
    }
}

/// Shrink the longest values until the embed's characters add up to at most `budget`.
fn fit(fields: &mut [(String, String)], fixed: usize, budget: usize) {
    let total = |fields: &[(String, String)]| {
        fixed
            + fields
                .iter()
                .map(|(n, v)| n.encode_utf16().count() + v.encode_utf16().count())
                .sum::<usize>()
    };
    while total(fields) > budget {
        let excess = total(fields) - budget;
        let Some(longest) = fields
            .iter_mut()
            .max_by_key(|(_, v)| v.encode_utf16().count())
        else {
            return;
        };
        let len = longest.1.encode_utf16().count();
        if len <= 1 {
            return;
        }
        longest.1 = cut(&longest.1, len.saturating_sub(excess).max(1));
    }
}

/// The log's file name: `gitops-<short commit>.log`, or the event id's start without a commit.
fn log_name(event: &Event) -> String {
    let id: String = event
        .commit
        .as_deref()
        .map(short)
        .unwrap_or(&event.id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("gitops-{id}.log")
}

/// Discord: `payload_json` (content, one embed, no mentions) and the log as `files[0]`, as
/// `curl -F payload_json=… -F files[0]=@log` sends them.
fn discord(event: &Event, log: Option<&[u8]>, boundary: &str) -> Body {
    let content = cut(&headline(event), DISCORD_CONTENT);
    let title = cut(&format!("{}: {}", event.host, what(event)), DISCORD_TITLE);
    let footer = cut(&format!("gitops event {}", event.id), DISCORD_FOOTER);
    let mut fields: Vec<(String, String)> = facts(event)
        .into_iter()
        .map(|(name, value)| {
            // Discord refuses an empty field value.
            let value = if value.trim().is_empty() {
                "-".to_string()
            } else {
                value
            };
            (
                cut(name, DISCORD_FIELD_NAME),
                cut(&value, DISCORD_FIELD_VALUE),
            )
        })
        .collect();
    let fixed = title.encode_utf16().count() + footer.encode_utf16().count();
    fit(&mut fields, fixed, DISCORD_EMBED_TOTAL);
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(name, value)| {
            let inline = !matches!(name.as_str(), "Commit" | "Error");
            json!({ "name": name, "value": value, "inline": inline })
        })
        .collect();
    let colour = if event.event.is_failure() { RED } else { GREEN };
    let mut embed = json!({
        "title": title,
        "color": colour,
        "fields": fields,
        "footer": { "text": footer },
    });
    if !event.finished_at.is_empty() {
        embed["timestamp"] = json!(event.finished_at);
    }
    let name = log_name(event);
    let mut payload = json!({
        "content": content,
        "embeds": [embed],
        // A commit subject saying @everyone must not ping a whole server.
        "allowed_mentions": { "parse": [] },
    });
    if log.is_some() {
        payload["attachments"] = json!([{ "id": 0, "filename": name }]);
    }
    let mut bytes = Vec::new();
    let mut part = |headers: &str, data: &[u8]| {
        bytes.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
    };
    part(
        "Content-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json",
        payload.to_string().as_bytes(),
    );
    if let Some(log) = log {
        part(
            &format!("Content-Disposition: form-data; name=\"files[0]\"; filename=\"{name}\"\r\nContent-Type: text/plain; charset=utf-8"),
            log,
        );
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Body {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        bytes,
        headers: Vec::new(),
    }
}

/// Slack's mrkdwn takes `&`, `<` and `>` as markup.
fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack: `text` (notifications and old clients) and blocks with the same facts, the error and
/// the log's tail.
fn slack(event: &Event, log: Option<&[u8]>) -> Body {
    // Escaped too: Slack reads `text` as mrkdwn, so a subject's `<!channel>` would ping.
    let text = cut(&escape_mrkdwn(&headline(event)), SLACK_TEXT);
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": cut(&format!("{}: {}", event.host, what(event)), SLACK_HEADER) },
    })];
    let mut error = None;
    let fields: Vec<Value> = facts(event)
        .into_iter()
        .filter_map(|(name, value)| {
            if name == "Error" {
                error = Some(value);
                return None;
            }
            let field = format!("*{name}*\n{}", escape_mrkdwn(&value));
            Some(json!({ "type": "mrkdwn", "text": cut(&field, SLACK_FIELD) }))
        })
        .collect();
    blocks.push(json!({ "type": "section", "fields": fields }));
    if let Some(error) = error {
        let text = format!("*Error*\n{}", escape_mrkdwn(&error));
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": cut(&text, SLACK_SECTION) },
        }));
    }
    if let Some(log) = log {
        let log = String::from_utf8_lossy(log);
        // Three backquotes in the log would end the code block early.
        let log = escape_mrkdwn(&log).replace("```", "`\u{200b}``");
        let frame = "*Log (end)*\n``````".encode_utf16().count();
        let tail = tail(&log, SLACK_SECTION - frame);
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("*Log (end)*\n```{tail}```") },
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("gitops event {}", escape_mrkdwn(&event.id)) }],
    }));
    let body = json!({ "text": text, "blocks": blocks });
    Body {
        content_type: "application/json".to_string(),
        bytes: body.to_string().into_bytes(),
        headers: Vec::new(),
    }
}

/// The event as it is, signed when there is a key, the way GitHub signs its webhooks.
fn json_body(event: &Event, secret: Option<&[u8]>, now_unix: i64) -> Body {
    // An Event always serializes (plain fields, string keys); an empty body would be caught
    // by the receiver, never a panic here.
    let bytes = serde_json::to_vec(event).unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(key) = secret {
        headers.push((
            "X-Gitops-Signature".to_string(),
            format!("sha256={}", hmac_sha256_hex(key, &bytes)),
        ));
        headers.push(("X-Gitops-Timestamp".to_string(), now_unix.to_string()));
    }
    Body {
        content_type: "application/json".to_string(),
        bytes,
        headers,
    }
}

pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex(ring::hmac::sign(&key, data).as_ref())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn event(kind: Kind) -> Event {
        Event {
            version: 1,
            id: "0123456789abcdef0123456789abcdef".into(),
            event: kind,
            reminder: false,
            host: "web1".into(),
            machine_id: Some("m1".into()),
            outcome: kind.as_str().into(),
            repo_url: Some("https://***@git.example.com/cfg.git".into()),
            branch: Some("main".into()),
            commit: Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678".into()),
            subject: Some("Open port 443".into()),
            previous_commit: Some("ffeeddccbbaa99887766554433221100ffeeddcc".into()),
            attempt: None,
            started_at: "2025-01-02T03:04:05Z".into(),
            finished_at: "2025-01-02T03:04:07Z".into(),
            duration_seconds: 2.25,
            exit_code: 0,
            error: None,
            log_tail: Some("step 1\nstep 2\n".into()),
        }
    }

    fn extras<'a>(log: Option<&'a [u8]>, secret: Option<&'a [u8]>) -> Extras<'a> {
        Extras {
            log,
            secret,
            now_unix: 1_700_000_000,
            boundary: "BOUNDARY42",
        }
    }

    /// The parts of a multipart body: (headers, data).
    fn parts(body: &Body) -> Vec<(String, Vec<u8>)> {
        let text = &body.bytes;
        let delimiter = b"--BOUNDARY42";
        let mut out = Vec::new();
        let mut rest: &[u8] = text;
        while let Some(start) = find(rest, delimiter) {
            rest = &rest[start + delimiter.len()..];
            if rest.starts_with(b"--") {
                break;
            }
            rest = &rest[2..];
            let end = find(rest, delimiter).unwrap();
            let part = &rest[..end - 2];
            let split = find(part, b"\r\n\r\n").unwrap();
            out.push((
                String::from_utf8(part[..split].to_vec()).unwrap(),
                part[split + 4..].to_vec(),
            ));
        }
        out
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn durations_read_at_a_glance() {
        let table = [
            (0.0224, "22ms"),
            (0.9994, "999ms"),
            (2.25, "2.2s"),
            (59.94, "59.9s"),
            (125.4, "2min 5s"),
            (f64::NAN, "?"),
            (-1.0, "?"),
        ];
        for (seconds, shown) in table {
            assert_eq!(duration(seconds), shown, "{seconds}");
        }
    }

    #[test]
    fn auto_tells_discord_and_slack_by_host_and_path() {
        let table = [
            ("discord.com", "/api/webhooks/1/tok", Format::Discord),
            ("discordapp.com", "/api/webhooks/1/tok", Format::Discord),
            ("canary.discord.com", "/api/webhooks/1/t", Format::Discord),
            ("discord.com.", "/api/webhooks/1/t", Format::Discord),
            ("discord.com", "/channels/1", Format::Json),
            ("evildiscord.com", "/api/webhooks/1/t", Format::Json),
            ("hooks.slack.com", "/services/T/B/x", Format::Slack),
            ("slack.com", "/services/T/B/x", Format::Json),
            ("127.0.0.1", "/api/webhooks/1/t", Format::Json),
            ("alerts.example.com", "/gitops", Format::Json),
        ];
        for (host, path, format) in table {
            assert_eq!(Format::detect(host, path), format, "{host}{path}");
        }
    }

    #[test]
    fn discord_sends_payload_json_and_the_log_as_a_file() {
        let body = render(
            Format::Discord,
            &event(Kind::Applied),
            &extras(Some(b"line 1\nline 2\n"), None),
        );
        assert_eq!(
            body.content_type,
            "multipart/form-data; boundary=BOUNDARY42"
        );
        let parts = parts(&body);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].0.contains("name=\"payload_json\""));
        assert!(parts[1]
            .0
            .contains("name=\"files[0]\"; filename=\"gitops-a1b2c3d.log\""));
        assert_eq!(parts[1].1, b"line 1\nline 2\n");
        let payload: Value = serde_json::from_slice(&parts[0].1).unwrap();
        assert_eq!(
            payload["content"],
            "✅ gitops on web1: applied a1b2c3d \"Open port 443\""
        );
        let embed = &payload["embeds"][0];
        assert_eq!(embed["title"], "web1: applied");
        assert_eq!(embed["color"], GREEN);
        assert_eq!(payload["allowed_mentions"]["parse"], json!([]));
        assert_eq!(payload["attachments"][0]["filename"], "gitops-a1b2c3d.log");
        let fields: Vec<(String, String)> = embed["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected = [
            ("Host", "web1"),
            ("Outcome", "applied"),
            ("Commit", "a1b2c3d Open port 443"),
            ("Previous commit", "ffeeddc"),
            ("Duration", "2.2s"),
            ("Exit code", "0"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn discord_failures_are_red_and_carry_the_error_within_the_limits() {
        let mut failed = event(Kind::ApplyFailed);
        failed.exit_code = 1;
        failed.error = Some("x".repeat(5000));
        failed.subject = Some("é".repeat(3000));
        failed.host = "h".repeat(300);
        let body = render(Format::Discord, &failed, &extras(None, None));
        let parts = parts(&body);
        // No log given: the event's own tail is attached.
        assert_eq!(parts[1].1, b"step 1\nstep 2\n");
        let payload: Value = serde_json::from_slice(&parts[0].1).unwrap();
        let embed = &payload["embeds"][0];
        assert_eq!(embed["color"], RED);
        assert!(payload["content"].as_str().unwrap().chars().count() <= 2000);
        assert!(embed["title"].as_str().unwrap().chars().count() <= 256);
        let mut total = embed["title"].as_str().unwrap().chars().count()
            + embed["footer"]["text"].as_str().unwrap().chars().count();
        for field in embed["fields"].as_array().unwrap() {
            let value = field["value"].as_str().unwrap();
            assert!(value.chars().count() <= 1024, "{}", field["name"]);
            total += value.chars().count() + field["name"].as_str().unwrap().chars().count();
        }
        assert!(total <= 6000, "{total}");
        assert!(embed["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "Error" && f["value"].as_str().unwrap().ends_with('…')));
    }

    #[test]
    fn no_log_at_all_means_no_file_part() {
        let mut e = event(Kind::FetchFailed);
        e.log_tail = None;
        e.commit = None;
        let body = render(Format::Discord, &e, &extras(None, None));
        assert_eq!(parts(&body).len(), 1);
    }

    #[test]
    fn slack_sends_text_and_blocks_with_the_log_tail() {
        let mut failed = event(Kind::ApplyFailed);
        failed.error = Some("run.sh exited 1 <oops>".into());
        let log = format!("{}last line ```\n", "early line\n".repeat(1000));
        let body = render(Format::Slack, &failed, &extras(Some(log.as_bytes()), None));
        assert_eq!(body.content_type, "application/json");
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            v["text"],
            "❌ gitops on web1: apply failed a1b2c3d \"Open port 443\""
        );
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "web1: apply failed");
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert_eq!(fields[0]["text"], "*Host*\nweb1");
        assert_eq!(
            blocks[2]["text"]["text"],
            "*Error*\nrun.sh exited 1 &lt;oops&gt;"
        );
        let log_text = blocks[3]["text"]["text"].as_str().unwrap();
        assert!(log_text.starts_with("*Log (end)*\n```early line\n"));
        assert!(
            log_text.ends_with("last line `\u{200b}``\n```"),
            "{log_text}"
        );
        for block in blocks {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= 3000);
            }
        }
    }

    #[test]
    fn slack_never_pings_or_links_from_a_commit_subject() {
        let mut e = event(Kind::Applied);
        e.subject = Some("<!channel> <@U123> <https://evil.example|docs> & co".into());
        let body = render(Format::Slack, &e, &extras(None, None));
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            v["text"],
            "✅ gitops on web1: applied a1b2c3d \"&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|docs&gt; &amp; co\""
        );
        let text = String::from_utf8(body.bytes).unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
    }

    #[test]
    fn json_is_the_event_signed_with_the_key() {
        let e = event(Kind::Applied);
        let plain = render(Format::Json, &e, &extras(None, None));
        assert!(plain.headers.is_empty());
        let back: Event = serde_json::from_slice(&plain.bytes).unwrap();
        assert_eq!(back, e);
        let signed = render(Format::Json, &e, &extras(None, Some(b"key")));
        assert_eq!(signed.bytes, plain.bytes);
        assert_eq!(
            signed.headers,
            [
                (
                    "X-Gitops-Signature".to_string(),
                    format!("sha256={}", hmac_sha256_hex(b"key", &plain.bytes))
                ),
                ("X-Gitops-Timestamp".to_string(), "1700000000".to_string()),
            ]
        );
    }

    #[test]
    fn hmac_and_sha256_match_the_rfc_vectors() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn text_is_cut_on_character_boundaries() {
        let table = [
            ("hello", 10, "hello"),
            ("hello", 5, "hello"),
            ("hello", 4, "hel…"),
            ("ééééé", 3, "éé…"),
            ("😀😀😀", 4, "😀…"),
            ("😀😀😀", 2, "…"),
            ("abc", 0, ""),
        ];
        for (text, max, cut_to) in table {
            assert_eq!(cut(text, max), cut_to, "{text} {max}");
        }
        let tails = [
            ("a\nb\nc\n", 10, "a\nb\nc\n"),
            ("aaa\nbbb\nccc\n", 6, "ccc\n"),
            ("aaa\nbbb\nccc", 9, "bbb\nccc"),
            ("abcdefgh", 3, "fgh"),
            ("ééé\né", 3, "é"),
        ];
        for (text, max, kept) in tails {
            assert_eq!(tail(text, max), kept, "{text:?} {max}");
        }
        let logs: [(&[u8], usize, bool, &[u8]); 5] = [
            (b"a\nb\n", 10, false, b"a\nb\n"),
            (b"partial\nwhole\n", 100, true, b"whole\n"),
            (b"aaaa\nbb\ncc\n", 6, false, b"cc\n"),
            (b"one long line", 4, false, b"line"),
            (b"", 4, true, b""),
        ];
        for (log, max, cut_before, kept) in logs {
            assert_eq!(log_tail(log, max, cut_before), kept);
        }
    }

    proptest::proptest! {
        /// Whatever the event holds, every format renders within its limits without panicking.
        #[test]
        fn any_text_renders_within_the_limits(
            subject in "\\PC{0,3000}",
            error in "\\PC{0,7000}",
            host in "\\PC{0,300}",
            log in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
            max in 0usize..50,
        ) {
            let mut e = event(Kind::ApplyFailed);
            e.subject = Some(subject.clone());
            e.error = Some(error);
            e.host = host;
            for format in [Format::Discord, Format::Slack, Format::Json] {
                let body = render(format, &e, &extras(Some(&log), Some(b"k")));
                proptest::prop_assert!(!body.bytes.is_empty());
            }
            proptest::prop_assert!(cut(&subject, max).encode_utf16().count() <= max);
            proptest::prop_assert!(tail(&subject, max).encode_utf16().count() <= max);
            proptest::prop_assert!(log_tail(&log, max, true).len() <= max);
        }
    }
}
