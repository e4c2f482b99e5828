//! `gitops trigger` attacked: by a client without the secret, by one holding a captured
//! delivery, by a flood, and by a compromised trigger writing its own state files for root's
//! `gitops status` to read. The real binary on a socket passed as systemd passes it.

use crate::trigger::{base64, hex, mac, now_unix, Trigger, SECRET};

/// Send `head` and `body`, read the answer to the end: (status, body).
fn post_raw(t: &Trigger, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut bytes = format!(
        "POST /trigger HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        bytes.push_str(&format!("{name}: {value}\r\n"));
    }
    bytes.push_str("\r\n");
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    t.raw(&bytes)
}

#[test]
fn a_mac_captured_from_a_timestamped_form_does_not_verify_as_a_bare_body_mac() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    // A signed GitLab delivery of a push to another branch: authentic, ignored.
    let body = br#"{"ref":"refs/heads/dev"}"#;
    let id = "msg_2b1f";
    let ts = now_unix().to_string();
    let frame = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
    let tag = mac(SECRET.as_bytes(), &frame);
    let gitlab = [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", format!("v1,{}", base64(&tag))),
    ];
    assert_eq!(post_raw(&t, &gitlab, body), (202, "ignored".into()));
    // Whoever captured it sends its frame as a GitHub body with the same MAC: the branch
    // is no longer readable, the timestamp no longer checked.
    let github = [("X-Hub-Signature-256", format!("sha256={}", hex(&tag)))];
    assert_eq!(post_raw(&t, &github, &frame).0, 401, "as GitHub, at once");
    let gitea = [("X-Gitea-Signature", hex(&tag))];
    assert_eq!(post_raw(&t, &gitea, &frame).0, 401, "as Gitea, at once");
    // A generic signed request captured ten minutes ago: its window has passed, its MAC
    // over `timestamp.body` is still a MAC of some body.
    let old = (now_unix() - 600).to_string();
    let frame = [old.as_bytes(), b".", br#"{"ref":"refs/heads/main"}"#].concat();
    let tag = mac(SECRET.as_bytes(), &frame);
    let stale = [
        ("X-Gitops-Timestamp", old.clone()),
        ("X-Gitops-Signature", format!("sha256={}", hex(&tag))),
    ];
    assert_eq!(post_raw(&t, &stale, &frame[old.len() + 1..]).0, 401);
    let github = [("X-Hub-Signature-256", format!("sha256={}", hex(&tag)))];
    assert_eq!(
        post_raw(&t, &github, &frame).0,
        401,
        "a stale one as GitHub"
    );
    assert_eq!(t.calls(), 0);
    // What forges send still passes: JSON, GitHub's form encoding, and an empty body.
    for body in [
        &br#"{"ref":"refs/heads/main","n":1}"#[..],
        b"payload=%7B%7D",
        b"",
    ] {
        let github = [(
            "X-Hub-Signature-256",
            format!("sha256={}", hex(&mac(SECRET.as_bytes(), body))),
        )];
        assert_eq!(post_raw(&t, &github, body), (202, "started".into()));
    }
    assert_eq!(t.calls(), 3);
}
