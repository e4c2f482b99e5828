//! Who sent a request, decided from its headers and body alone: the forges' signature forms
//! checked in constant time, the timestamp window, the keys a replay is recognised by, and
//! what an authentic request asks for (a pass, nothing, or a pong).

use ring::hmac;

use crate::http::base64;

/// How far a signed timestamp may be from our clock, either way.
pub const WINDOW_SECS: i64 = 5 * 60;

/// The webhook secret, and the keys derived from it once.
pub struct Secret {
    raw: hmac::Key,
    /// Standard Webhooks (GitLab's signing token): a `whsec_` secret is the base64 of the key.
    standard: hmac::Key,
    /// HMAC of the secret under itself: a token is compared by its HMAC, in constant time and
    /// whatever its length.
    token_tag: hmac::Tag,
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        let raw = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let standard = bytes
            .strip_prefix(b"whsec_")
            .and_then(base64_decode)
            .map_or_else(|| raw.clone(), |k| hmac::Key::new(hmac::HMAC_SHA256, &k));
        let token_tag = hmac::sign(&raw, bytes);
        Secret {
            raw,
            standard,
            token_tag,
        }
    }
}

/// The request's headers, names in lower case, in their order.
pub type Headers = [(String, String)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Gitea,
    Forgejo,
    /// `X-Gitlab-Token`: the secret itself.
    GitLab,
    /// GitLab's signing token, in the Standard Webhooks form.
    GitLabSigned,
    /// `X-Gitops-Signature` with `X-Gitops-Timestamp`: scripts, CI jobs.
    Gitops,
}

impl Forge {
    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::GitLab => "gitlab",
            Forge::GitLabSigned => "gitlab-signed",
            Forge::Gitops => "gitops",
        }
    }
}

/// Why a request was not authenticated; the name is the `reason` label of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No header of any form we know.
    Unsigned,
    /// A header of a form we know, with a value that does not match the secret.
    Signature,
    /// A signature that matched, over a timestamp outside the window.
    Timestamp,
    /// A header given twice, or not in its form.
    Malformed,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Signature => "signature",
            Refusal::Timestamp => "timestamp",
            Refusal::Malformed => "malformed",
        }
    }
}

/// An authentic request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentic {
    pub forge: Forge,
    /// The forge's delivery id, as sent (shown sanitised, never trusted for anything else).
    pub delivery: Option<String>,
    /// What a second sending of this request would share with it: the delivery id, and the
    /// MAC (or, for a bare token, the body's digest), which an attacker cannot change without
    /// the secret. Hashed, so the replay file never holds a string a client chose.
    pub replay_keys: Vec<String>,
}

/// The one value of a header, None when absent; a header sent twice is malformed (which of
/// two signatures would we check?).
fn one<'a>(headers: &'a Headers, name: &str) -> Result<Option<&'a str>, Refusal> {
    let mut found = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.trim());
    let first = found.next();
    if found.next().is_some() {
        return Err(Refusal::Malformed);
    }
    Ok(first)
}

pub fn authenticate(
    headers: &Headers,
    body: &[u8],
    secret: &Secret,
    now_unix: i64,
) -> Result<Authentic, Refusal> {
    let authentic = |forge: Forge, delivery: Option<&str>, mac: &[u8]| -> Result<_, Refusal> {
        let mut keys = Vec::new();
        if let Some(id) = delivery.filter(|d| !d.is_empty()) {
            keys.push(digest(&[
                b"id:",
                family(forge).as_bytes(),
                b":",
                id.as_bytes(),
            ]));
        }
        keys.push(digest(&[b"mac:", mac]));
        Ok(Authentic {
            forge,
            delivery: delivery.map(str::to_string),
            replay_keys: keys,
        })
    };
    if let Some(value) = one(headers, "x-hub-signature-256")? {
        let mac = value
            .strip_prefix("sha256=")
            .and_then(hex_decode)
            .filter(|_| forge_body(body))
            .ok_or(Refusal::Malformed)?;
        hmac::verify(&secret.raw, body, &mac).map_err(|_| Refusal::Signature)?;
        return authentic(Forge::GitHub, one(headers, "x-github-delivery")?, &mac);
    }
    for (header, forge, id) in [
        ("x-forgejo-signature", Forge::Forgejo, "x-forgejo-delivery"),
        ("x-gitea-signature", Forge::Gitea, "x-gitea-delivery"),
    ] {
        if let Some(value) = one(headers, header)? {
            let mac = hex_decode(value)
                .filter(|_| forge_body(body))
                .ok_or(Refusal::Malformed)?;
            hmac::verify(&secret.raw, body, &mac).map_err(|_| Refusal::Signature)?;
            return authentic(forge, one(headers, id)?, &mac);
        }
    }
    if let Some(value) = one(headers, "webhook-signature")? {
        let id = one(headers, "webhook-id")?.ok_or(Refusal::Malformed)?;
        let timestamp = one(headers, "webhook-timestamp")?.ok_or(Refusal::Malformed)?;
        let stamp = parse_unix(timestamp).ok_or(Refusal::Malformed)?;
        let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
        let tag = hmac::sign(&secret.standard, &signed);
        let expected = base64(tag.as_ref());
        // Several `v1,<base64>` entries (a secret being rotated): one match is enough.
        let matched = value
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .any(|given| same(&secret.raw, given.as_bytes(), expected.as_bytes()));
        if !matched {
            return Err(Refusal::Signature);
        }
        in_window(stamp, now_unix)?;
        // The MAC's bytes, as the other forms key theirs: one MAC, one key, whatever form
        // it arrives in.
        return authentic(Forge::GitLabSigned, Some(id), tag.as_ref());
    }
    if let Some(value) = one(headers, "x-gitops-signature")? {
        let timestamp = one(headers, "x-gitops-timestamp")?.ok_or(Refusal::Malformed)?;
        let stamp = parse_unix(timestamp).ok_or(Refusal::Malformed)?;
        let mac = value
            .strip_prefix("sha256=")
            .and_then(hex_decode)
            .ok_or(Refusal::Malformed)?;
        // The timestamp is inside the MAC: outside it, anyone could move an old request into
        // the window.
        let signed = [timestamp.as_bytes(), b".", body].concat();
        hmac::verify(&secret.raw, &signed, &mac).map_err(|_| Refusal::Signature)?;
        in_window(stamp, now_unix)?;
        return authentic(Forge::Gitops, one(headers, "x-gitops-delivery")?, &mac);
    }
    if let Some(token) = one(headers, "x-gitlab-token")? {
        hmac::verify(&secret.raw, token.as_bytes(), secret.token_tag.as_ref())
            .map_err(|_| Refusal::Signature)?;
        let delivery = match one(headers, "x-gitlab-event-uuid")? {
            Some(id) => Some(id),
            None => one(headers, "idempotency-key")?,
        };
        let body_digest = ring::digest::digest(&ring::digest::SHA256, body);
        return authentic(Forge::GitLab, delivery, body_digest.as_ref());
    }
    Err(Refusal::Unsigned)
}

/// What the forms that sign the body alone (GitHub, Gitea, Forgejo) may sign: a JSON object,
/// GitHub's form encoding (`payload=`), or nothing. Every form shares the one secret, so a MAC
/// of `timestamp.body` (ours) or `id.timestamp.body` (Standard Webhooks) is also a MAC of some
/// body: sent as that body under a bare-body header, a captured timestamped request would
/// outlive its window and lose its branch. Those frames start with digits or the forge's id,
/// never with `{` or `payload=`.
fn forge_body(body: &[u8]) -> bool {
    body.is_empty() || body.trim_ascii_start().starts_with(b"{") || body.starts_with(b"payload=")
}

/// The delivery ids of Gitea and Forgejo are the same counter (Forgejo sends both headers).
fn family(forge: Forge) -> &'static str {
    match forge {
        Forge::Gitea | Forge::Forgejo => "gitea",
        Forge::GitLab | Forge::GitLabSigned => "gitlab",
        other => other.name(),
    }
}

fn in_window(stamp: i64, now_unix: i64) -> Result<(), Refusal> {
    if (stamp.saturating_sub(now_unix)).abs() <= WINDOW_SECS {
        Ok(())
    } else {
        Err(Refusal::Timestamp)
    }
}

fn parse_unix(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Two strings compared through their HMACs: constant time, whatever their lengths.
fn same(key: &hmac::Key, given: &[u8], expected: &[u8]) -> bool {
    hmac::verify(key, given, hmac::sign(key, expected).as_ref()).is_ok()
}

fn digest(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Standard base64 with padding, or None.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for (j, c) in chunk.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { value(*c)? };
            n |= v << (18 - 6 * j);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// What an authentic request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a pass.
    Start,
    /// A forge's test of the hook: answered, nothing started.
    Pong,
    /// Authentic, but not for us (another branch, another event): 202, nothing started.
    Ignore(String),
}

/// The event the forges name in a header; a request without one (a script) is a push.
const EVENT_HEADERS: [&str; 4] = [
    "x-github-event",
    "x-gitea-event",
    "x-forgejo-event",
    "x-gitlab-event",
];

/// A push to the followed branch starts a pass; a push to another branch, a tag, or any other
/// event starts nothing. Without a followed branch configured every push starts a pass (one
/// on an unchanged branch is a cheap no-op). A body that is not JSON (GitHub's form encoding)
/// or names no ref starts a pass: the branch is then checked by the pass itself.
pub fn action(headers: &Headers, body: &[u8], branch: Option<&str>) -> Action {
    let event = EVENT_HEADERS
        .iter()
        .find_map(|name| headers.iter().find(|(n, _)| n == name))
        .map(|(_, v)| v.trim());
    match event {
        None | Some("push" | "Push Hook") => {}
        Some("ping") => return Action::Pong,
        Some(other) => return Action::Ignore(format!("not a push ({})", shown(other))),
    }
    let reference = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
    match (reference, branch) {
        (Some(reference), Some(branch)) => {
            if reference.strip_prefix("refs/heads/") == Some(branch) {
                Action::Start
            } else {
                Action::Ignore(format!(
                    "a push to {}, not to {}",
                    shown(&reference),
                    shown(branch)
                ))
            }
        }
        (Some(reference), None) if !reference.starts_with("refs/heads/") => {
            Action::Ignore(format!("a push to {}, not to a branch", shown(&reference)))
        }
        _ => Action::Start,
    }
}

/// A string from a request, fit for one log line: printable ASCII, at most 64 characters.
pub fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    type Owned = Vec<(String, String)>;

    fn h(pairs: &[(&str, &str)]) -> Owned {
        pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn each_forge_form_is_accepted_with_the_secret_and_refused_without() {
        let secret = Secret::new(b"It's a Secret to Everybody");
        let other = b"another secret, the wrong one";
        let body = br#"{"ref":"refs/heads/main"}"#;
        let ts = NOW.to_string();
        let old = (NOW - WINDOW_SECS - 1).to_string();
        let gh = |key: &[u8]| format!("sha256={}", hex(&mac(key, body)));
        let bare = |key: &[u8]| hex(&mac(key, body));
        let sw = |key: &[u8], ts: &str| {
            let signed = [b"msg_1.", ts.as_bytes(), b".", body].concat();
            format!("v1,{}", base64(&mac(key, &signed)))
        };
        let gitops = |key: &[u8], ts: &str| {
            let signed = [ts.as_bytes(), b".", body].concat();
            format!("sha256={}", hex(&mac(key, &signed)))
        };
        let key = b"It's a Secret to Everybody".as_slice();
        #[rustfmt::skip]
        let table: Vec<(Owned, Result<Forge, Refusal>)> = vec![
            (h(&[("X-Hub-Signature-256", &gh(key)), ("X-GitHub-Delivery", "d1")]), Ok(Forge::GitHub)),
            (h(&[("X-Hub-Signature-256", &gh(other))]), Err(Refusal::Signature)),
            (h(&[("X-Hub-Signature-256", &bare(key))]), Err(Refusal::Malformed)),
            (h(&[("X-Hub-Signature-256", &gh(key)), ("X-Hub-Signature-256", &gh(key))]), Err(Refusal::Malformed)),
            (h(&[("X-Hub-Signature-256", "sha256=zz")]), Err(Refusal::Malformed)),
            (h(&[("X-Gitea-Signature", &bare(key))]), Ok(Forge::Gitea)),
            (h(&[("X-Forgejo-Signature", &bare(key)), ("X-Gitea-Signature", &bare(key))]), Ok(Forge::Forgejo)),
            (h(&[("X-Gitea-Signature", &bare(other))]), Err(Refusal::Signature)),
            (h(&[("X-Gitlab-Token", "It's a Secret to Everybody")]), Ok(Forge::GitLab)),
            (h(&[("X-Gitlab-Token", "It's a Secret to Everybod")]), Err(Refusal::Signature)),
            (h(&[("X-Gitlab-Token", "")]), Err(Refusal::Signature)),
            (h(&[("webhook-id", "msg_1"), ("webhook-timestamp", &ts), ("webhook-signature", &sw(key, &ts))]), Ok(Forge::GitLabSigned)),
            (h(&[("webhook-id", "msg_1"), ("webhook-timestamp", &ts), ("webhook-signature", &format!("v1,AAAA {}", sw(key, &ts)))]), Ok(Forge::GitLabSigned)),
            (h(&[("webhook-id", "msg_1"), ("webhook-timestamp", &ts), ("webhook-signature", &sw(other, &ts))]), Err(Refusal::Signature)),
            (h(&[("webhook-id", "msg_1"), ("webhook-timestamp", &old), ("webhook-signature", &sw(key, &old))]), Err(Refusal::Timestamp)),
            (h(&[("webhook-id", "msg_1"), ("webhook-signature", &sw(key, &ts))]), Err(Refusal::Malformed)),
            (h(&[("X-Gitops-Signature", &gitops(key, &ts)), ("X-Gitops-Timestamp", &ts)]), Ok(Forge::Gitops)),
            (h(&[("X-Gitops-Signature", &gitops(key, &ts)), ("X-Gitops-Timestamp", &old)]), Err(Refusal::Signature)),
            (h(&[("X-Gitops-Signature", &gitops(key, &old)), ("X-Gitops-Timestamp", &old)]), Err(Refusal::Timestamp)),
            (h(&[("X-Gitops-Signature", &gitops(key, &ts)), ("X-Gitops-Timestamp", "-1")]), Err(Refusal::Malformed)),
            (h(&[("Content-Type", "application/json")]), Err(Refusal::Unsigned)),
        ];
        for (i, (headers, want)) in table.iter().enumerate() {
            let got = authenticate(headers, body, &secret, NOW).map(|a| a.forge);
            assert_eq!(&got, want, "row {i}: {headers:?}");
        }
    }

    #[test]
    fn a_whsec_secret_keys_standard_webhooks_with_its_decoded_bytes() {
        let key = b"0123456789abcdef0123456789abcdef";
        let secret_text = format!("whsec_{}", base64(key));
        let secret = Secret::new(secret_text.as_bytes());
        let ts = NOW.to_string();
        let signed = [b"id.", ts.as_bytes(), b".{}"].concat();
        let sig = format!("v1,{}", base64(&mac(key, &signed)));
        let headers = h(&[
            ("webhook-id", "id"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sig),
        ]);
        assert!(authenticate(&headers, b"{}", &secret, NOW).is_ok());
    }

    #[test]
    fn a_replay_shares_a_key_even_under_a_new_delivery_id() {
        let secret = Secret::new(b"It's a Secret to Everybody");
        let body = b"{}";
        let sig = format!("sha256={}", hex(&mac(b"It's a Secret to Everybody", body)));
        let first = authenticate(
            &h(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "a")]),
            body,
            &secret,
            NOW,
        )
        .unwrap();
        let again = authenticate(
            &h(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "b")]),
            body,
            &secret,
            NOW,
        )
        .unwrap();
        assert!(again
            .replay_keys
            .iter()
            .any(|k| first.replay_keys.contains(k)));
        // Hashed: the replay file never holds what a client wrote.
        assert!(first
            .replay_keys
            .iter()
            .all(|k| k.len() == 32 && k.chars().all(|c| c.is_ascii_hexdigit())));
    }

    #[test]
    fn base64_decodes_what_it_encodes() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(base64(&bytes).as_bytes()), Some(bytes));
        }
        for bad in ["A", "A===", "=AAA", "AA=A", "AAA*"] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn what_a_request_asks_for_as_a_table() {
        let main = Some("main");
        #[rustfmt::skip]
        let table: Vec<(Owned, &str, Option<&str>, Action)> = vec![
            (h(&[("X-GitHub-Event", "push")]), r#"{"ref":"refs/heads/main"}"#, main, Action::Start),
            (h(&[("X-GitHub-Event", "push")]), r#"{"ref":"refs/heads/dev"}"#, main, Action::Ignore("a push to refs/heads/dev, not to main".into())),
            (h(&[("X-GitHub-Event", "push")]), r#"{"ref":"refs/tags/v1"}"#, main, Action::Ignore("a push to refs/tags/v1, not to main".into())),
            (h(&[("X-GitHub-Event", "push")]), r#"{"ref":"refs/tags/v1"}"#, None, Action::Ignore("a push to refs/tags/v1, not to a branch".into())),
            (h(&[("X-GitHub-Event", "push")]), r#"{"ref":"refs/heads/dev"}"#, None, Action::Start),
            (h(&[("X-GitHub-Event", "ping")]), r#"{"zen":"x"}"#, main, Action::Pong),
            (h(&[("X-GitHub-Event", "issues")]), "{}", main, Action::Ignore("not a push (issues)".into())),
            (h(&[("X-Gitlab-Event", "Push Hook")]), r#"{"ref":"refs/heads/main"}"#, main, Action::Start),
            (h(&[("X-Gitlab-Event", "Tag Push Hook")]), r#"{"ref":"refs/tags/v1"}"#, main, Action::Ignore("not a push (Tag Push Hook)".into())),
            (h(&[("X-Gitea-Event", "push")]), r#"{"ref":"refs/heads/main"}"#, main, Action::Start),
            (h(&[]), "", main, Action::Start),
            (h(&[]), "payload=%7B%22ref%22", main, Action::Start),
            (h(&[]), r#"{"ref":"refs/heads/x\u0007"}"#, main, Action::Ignore("a push to refs/heads/x?, not to main".into())),
        ];
        for (i, (headers, body, branch, want)) in table.into_iter().enumerate() {
            assert_eq!(action(&headers, body.as_bytes(), branch), want, "row {i}");
        }
    }
}
