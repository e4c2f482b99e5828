//! Text as gitops says it: error chains on one line, whatever came from a repository or a
//! server made printable and bounded, times in RFC 3339. Everything that reaches the journal,
//! status, state.json or a notification goes through here.

use time::OffsetDateTime;

/// The error chain on one line, as status and the journal show it, credentials masked. A cause
/// whose words the error above it already quotes (reqwest's "error sending request for url
/// (…)" comes wrapped in a gix error that repeats it) is said once.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in e.chain() {
        let words = cause.to_string().replace('\n', " ");
        let words = words.trim();
        if words.is_empty() || said.last().is_some_and(|above| above.contains(words)) {
            continue;
        }
        said.push(words.to_string());
    }
    bounded(&printable(&crate::redact::scrub(&said.join(": "))))
}

/// Text from the repository (a commit's subject) as status may show it: written by whoever
/// can push, so held to the same rules as a server's message.
pub fn shown(text: &str) -> String {
    bounded(&printable(text))
}

/// The longest message a pass prints or records, in characters: a server's error can be 64 KiB.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Control characters written out (`\x1b`, `\x0d`), a tab as a space: a message from a
/// hostile server must not move the cursor, repaint the terminal or overwrite a line. The
/// bidirectional controls and the Unicode line and paragraph separators are written out too
/// (`\u{202e}`): a terminal or web page that honours them shows a line other than the one
/// that runs (a `gitops plan` diff where `rm -rf …` reads as a harmless comment), or starts
/// a line the text does not have.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}' => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// At most `MAX_MESSAGE_CHARS` characters: the start and the end of a longer message (where the
/// cause and the server's last words usually are), joined by "…".
fn bounded(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return text.to_string();
    }
    let head = (MAX_MESSAGE_CHARS - 1) / 2;
    let tail = MAX_MESSAGE_CHARS - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

/// RFC 3339 to the second: what state.json and status show.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_to_the_second() {
        let t = time::macros::datetime!(2026-11-25 10:15:30.123 UTC);
        assert_eq!(rfc3339(t), "2026-11-25T10:15:30Z");
    }

    #[test]
    fn messages_are_printable_and_bounded() {
        let table = [
            ("plain words", "plain words"),
            (
                "\x1b[31mred\x1b[0m\rgitops: up to date",
                "\\x1b[31mred\\x1b[0m\\x0dgitops: up to date",
            ),
            ("a\tb\u{7f}c\u{9b}d", "a b\\x7fc\\x9bd"),
            ("é ü", "é ü"),
            (
                "rm -rf / #\u{202e}\u{2066} comment\u{2069}\u{2028}x",
                "rm -rf / #\\u{202e}\\u{2066} comment\\u{2069}\\u{2028}x",
            ),
            // Joiners stay: emoji and scripts need them.
            (
                "\u{1f468}\u{200d}\u{1f469} \u{5d0}\u{5d1}",
                "\u{1f468}\u{200d}\u{1f469} \u{5d0}\u{5d1}",
            ),
        ];
        for (text, shown) in table {
            assert_eq!(printable(text), shown, "{text:?}");
        }
        let long = format!("start {} end", "é".repeat(5000));
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.starts_with("start é") && cut.ends_with("é end") && cut.contains('…'));
        assert_eq!(bounded("short"), "short");
        let e = anyhow::anyhow!("ERR \x1b[2J{}", "A".repeat(65000));
        let line = one_line(&e);
        assert!(
            line.chars().count() <= MAX_MESSAGE_CHARS && !line.contains('\x1b'),
            "{line}"
        );
    }
}
