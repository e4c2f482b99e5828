//! What a plan shows of the repository: the commits, the files changed and the entry point's
//! diff, read from the object store, bounded, and made printable.

use super::*;

pub(super) fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree_id())
        .map_err(|e| {
            fail(
                Exit::Internal,
                format!(
                    "the tree of {} cannot be read from the object store ({e}): the store may be damaged, and gitops sync fetches it again when it cannot write a tree out of it",
                    commit.to_hex_with_len(12)
                ),
            )
        })?;
    Ok(tree.detach())
}

/// The commits of `tip` that `base` does not have, the newest first; all of the branch when
/// there is no base. Bounded: counted up to `MAX_COMMITS_COUNTED`, listed up to
/// `MAX_COMMITS_SHOWN`. A walk that fails part-way (a shallow boundary) ends the count there.
pub(super) fn commits(repo: &gix::Repository, tip: ObjectId, base: Option<ObjectId>) -> Commits {
    let walk = |from: ObjectId, hidden: Option<ObjectId>, list: bool| {
        let mut found = Commits::default();
        let mut platform =
            repo.rev_walk([from])
                .sorting(gix::revision::walk::Sorting::ByCommitTime(
                    gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
                ));
        if let Some(hidden) = hidden {
            platform = platform.with_hidden([hidden]);
        }
        let Ok(walk) = platform.all() else {
            return found;
        };
        for info in walk {
            let Ok(info) = info else { break };
            if found.total == MAX_COMMITS_COUNTED {
                found.more = true;
                break;
            }
            found.total += 1;
            if list && found.list.len() < MAX_COMMITS_SHOWN {
                found.list.push(CommitShown {
                    commit: info.id.to_string(),
                    subject: git::subject(repo, info.id)
                        .map(|s| clip(&crate::report::text::shown(&s))),
                });
            }
        }
        found
    };
    let mut found = walk(tip, base, true);
    // The base is not in the tip's history: a rewind. What the branch lost is news too.
    if let Some(base) = base {
        if !matches!(git::relation(repo, Some(base), tip), Ok(Relation::Descends)) {
            found.dropped = Some(walk(base, Some(tip), false).total);
        }
    }
    found
}

/// One side of a changed path: its mode and object.
pub(super) type Side = Option<(EntryMode, ObjectId)>;

/// The files that differ between the base's tree (nothing on a first apply) and the tip's,
/// sorted by path, with their line counts as far as `COUNT_BUDGET` reaches.
pub(super) fn files(
    repo: &gix::Repository,
    base: Option<ObjectId>,
    base_tree: Option<ObjectId>,
    tip_tree: ObjectId,
) -> Result<Files> {
    let empty = repo.empty_tree();
    let old = match base_tree {
        Some(id) => repo.find_tree(id)?,
        None => empty,
    };
    let new = repo.find_tree(tip_tree)?;
    let records = git::tree::changes(repo, &old, &new).map_err(|e| {
        fail(
            Exit::Internal,
            format!("the trees cannot be compared ({e}): the store may be damaged, and gitops sync fetches it again when it cannot write a tree out of it"),
        )
    })?;
    use gix::diff::tree::recorder::Change;
    // Directories are walked into (their files are changes of their own) and left out.
    let file = |mode: EntryMode, id: ObjectId| (!mode.is_tree()).then_some((mode, id));
    let mut changes: Vec<(gix::bstr::BString, Side, Side)> = records
        .into_iter()
        .filter_map(|change| {
            let (path, old, new) = match change {
                Change::Addition {
                    entry_mode,
                    oid,
                    path,
                    ..
                } => (path, None, file(entry_mode, oid)),
                Change::Deletion {
                    entry_mode,
                    oid,
                    path,
                    ..
                } => (path, file(entry_mode, oid), None),
                Change::Modification {
                    previous_entry_mode,
                    previous_oid,
                    entry_mode,
                    oid,
                    path,
                } => (
                    path,
                    file(previous_entry_mode, previous_oid),
                    file(entry_mode, oid),
                ),
            };
            (old.is_some() || new.is_some()).then_some((path, old, new))
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut found = Files {
        base: base.map(|b| b.to_string()),
        total: changes.len(),
        ..Files::default()
    };
    let mut budget = Budget {
        bytes: COUNT_BUDGET,
        lines: LINE_BUDGET,
    };
    for (path, old, new) in changes {
        stopped()?;
        let counted = count(repo, old, new, &mut budget);
        let change = change_name(old, new);
        let (insertions, deletions, note) = match counted {
            Counted::Lines { added, removed } => (Some(added), Some(removed), None),
            Counted::Not(note) => (None, None, Some(note)),
        };
        found.insertions += insertions.unwrap_or(0);
        found.deletions += deletions.unwrap_or(0);
        if note.is_some() {
            found.uncounted += 1;
        }
        if found.list.len() < MAX_FILES_SHOWN {
            found.list.push(FileChange {
                path: clip(&printable_bytes(&path)),
                change,
                insertions,
                deletions,
                note,
            });
        }
    }
    Ok(found)
}

pub(super) fn change_name(old: Side, new: Side) -> &'static str {
    match (old, new) {
        (None, _) => "added",
        (_, None) => "deleted",
        (Some((a, _)), Some((b, _))) if a.kind() != b.kind() && !both_files(a, b) => "type-changed",
        (Some((a, x)), Some((b, y))) if a != b && x == y => "mode-changed",
        _ => "modified",
    }
}

/// A plain file and an executable one are both files: an exec bit is a mode change.
pub(super) fn both_files(a: EntryMode, b: EntryMode) -> bool {
    let file = |m: EntryMode| matches!(m.kind(), EntryKind::Blob | EntryKind::BlobExecutable);
    file(a) && file(b)
}

/// Line counts of one file, or why there are none.
pub(super) enum Counted {
    Lines { added: u64, removed: u64 },
    Not(String),
}

/// What the line counts of one plan may still read and diff.
pub(super) struct Budget {
    pub bytes: u64,
    pub lines: usize,
}

pub(super) fn count(repo: &gix::Repository, old: Side, new: Side, budget: &mut Budget) -> Counted {
    let submodule = |side: Side| side.is_some_and(|(m, _)| m.is_commit());
    if submodule(old) || submodule(new) {
        return Counted::Not("submodule".into());
    }
    if let (Some((_, a)), Some((_, b))) = (old, new) {
        if a == b {
            return Counted::Lines {
                added: 0,
                removed: 0,
            };
        }
    }
    let size = |side: Side| {
        side.map_or(Ok(0), |(_, id)| {
            repo.find_header(id).map(|h| h.size()).map_err(|_| ())
        })
    };
    let (Ok(old_size), Ok(new_size)) = (size(old), size(new)) else {
        return Counted::Not("unreadable".into());
    };
    if old_size.max(new_size) > MAX_COUNTED_BLOB {
        return Counted::Not(format!("large, {old_size} -> {new_size} bytes"));
    }
    let total = old_size + new_size;
    if total > budget.bytes {
        return Counted::Not("not counted".into());
    }
    budget.bytes -= total;
    let read = |side: Side| -> std::result::Result<Vec<u8>, ()> {
        match side {
            None => Ok(Vec::new()),
            Some((_, id)) => repo
                .find_object(id)
                .map(|o| o.detach().data)
                .map_err(|_| ()),
        }
    };
    let (Ok(a), Ok(b)) = (read(old), read(new)) else {
        return Counted::Not("unreadable".into());
    };
    if is_binary(&a) || is_binary(&b) {
        return Counted::Not(format!("binary, {old_size} -> {new_size} bytes"));
    }
    let (old_lines, new_lines) = (lines(&a), lines(&b));
    if let Err(note) = diffable(old_lines, new_lines, &mut budget.lines) {
        return Counted::Not(note);
    }
    let (added, removed) = line_counts(&a, &b);
    Counted::Lines { added, removed }
}

/// Lines of a text, as a diff sees them: a last line without its newline counts.
pub(super) fn lines(data: &[u8]) -> usize {
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(!data.is_empty() && !data.ends_with(b"\n"))
}

/// Whether two sides of these many lines may be diffed, taken from what `budget` has left;
/// else the note shown instead of the counts.
pub(super) fn diffable(
    old_lines: usize,
    new_lines: usize,
    budget: &mut usize,
) -> std::result::Result<(), String> {
    if old_lines.max(new_lines) > MAX_COUNTED_LINES {
        return Err(format!("large, {old_lines} -> {new_lines} lines"));
    }
    let total = old_lines + new_lines;
    if total > *budget {
        return Err("not counted".into());
    }
    *budget -= total;
    Ok(())
}

pub(super) fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(BINARY_PROBE)].contains(&0)
}

pub(super) fn line_counts(old: &[u8], new: &[u8]) -> (u64, u64) {
    use gix::diff::blob::{Algorithm, Diff, InternedInput};
    let input = InternedInput::new(old, new);
    let diff = Diff::compute(Algorithm::Histogram, &input);
    (
        u64::from(diff.count_additions()),
        u64::from(diff.count_removals()),
    )
}

/// The entry point in the base and in the tip, and its diff.
pub(super) fn entry_point(
    repo: &gix::Repository,
    path: &str,
    base_tree: Option<ObjectId>,
    tip_tree: ObjectId,
) -> EntryPoint {
    let old = base_tree.and_then(|t| git::tree::entry_at(repo, t, path).ok().flatten());
    let new = git::tree::entry_at(repo, tip_tree, path).ok().flatten();
    let kind = new.map(|(mode, _)| match mode.kind() {
        EntryKind::Blob => "file",
        EntryKind::BlobExecutable => "executable",
        EntryKind::Link => "symlink",
        EntryKind::Tree => "directory",
        EntryKind::Commit => "submodule",
    });
    let mut shown = EntryPoint {
        path: clip(&crate::report::text::shown(path)),
        why: String::new(),
        change: match (old, new) {
            (None, None) => "missing",
            (Some(a), Some(b)) if a == b => "unchanged",
            _ => change_name(old, new),
        },
        kind,
        diff: None,
        truncated: false,
        note: None,
    };
    if matches!(shown.change, "missing" | "unchanged" | "mode-changed") {
        return shown;
    }
    let text = |side: Side| -> std::result::Result<Vec<u8>, String> {
        let Some((mode, id)) = side else {
            return Ok(Vec::new());
        };
        if mode.is_tree() || mode.is_commit() {
            return Err(format!(
                "a {}",
                if mode.is_tree() {
                    "directory"
                } else {
                    "submodule"
                }
            ));
        }
        let size = repo
            .find_header(id)
            .map(|h| h.size())
            .map_err(|_| "unreadable".to_string())?;
        if size > MAX_COUNTED_BLOB {
            return Err(format!("large, {size} bytes"));
        }
        let data = repo
            .find_object(id)
            .map(|o| o.detach().data)
            .map_err(|_| "unreadable".to_string())?;
        if is_binary(&data) {
            return Err(format!("binary, {size} bytes"));
        }
        let count = lines(&data);
        if count > MAX_COUNTED_LINES {
            return Err(format!("large, {count} lines"));
        }
        Ok(data)
    };
    match (text(old), text(new)) {
        (Ok(a), Ok(b)) => {
            let (lines, truncated) = unified(&a, &b, CONTEXT, MAX_DIFF_LINES);
            shown.diff = Some(lines);
            shown.truncated = truncated;
        }
        (Err(why), _) | (_, Err(why)) => shown.note = Some(why),
    }
    shown
}

/// A unified diff of two texts, `context` lines around each change, hunks that would overlap
/// merged as `git diff` does; every line printable and cut to `MAX_LINE_CHARS`, at most
/// `max_lines` lines (then the bool is true).
pub(super) fn unified(
    old: &[u8],
    new: &[u8],
    context: u32,
    max_lines: usize,
) -> (Vec<String>, bool) {
    use gix::diff::blob::{Algorithm, Diff, InternedInput};
    let input = InternedInput::new(old, new);
    let mut diff = Diff::compute(Algorithm::Histogram, &input);
    diff.postprocess_lines(&input);
    let before: Vec<&[u8]> = input.before.iter().map(|t| input.interner[*t]).collect();
    let after: Vec<&[u8]> = input.after.iter().map(|t| input.interner[*t]).collect();
    let hunks: Vec<(Range<u32>, Range<u32>)> = diff.hunks().map(|h| (h.before, h.after)).collect();
    let mut out = Vec::new();
    let mut truncated = false;
    let mut push = |out: &mut Vec<String>, line: String| {
        if out.len() >= max_lines {
            truncated = true;
            return false;
        }
        out.push(line);
        true
    };
    let line = |mark: char, text: &[u8]| {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        clip(&format!("{mark}{}", printable_bytes(text)))
    };
    let mut start = 0;
    while start < hunks.len() {
        // The hunks whose contexts touch go into one.
        let mut end = start + 1;
        while end < hunks.len()
            && hunks[end].0.start.saturating_sub(hunks[end - 1].0.end) <= 2 * context
        {
            end += 1;
        }
        let (first, last) = (&hunks[start], &hunks[end - 1]);
        let lead = first.0.start.min(context);
        let from_before = first.0.start - lead;
        let from_after = first.1.start.saturating_sub(lead);
        let to_before = (last.0.end + context).min(before.len() as u32);
        let trail = to_before - last.0.end;
        let to_after = (last.1.end + trail).min(after.len() as u32);
        let header = format!(
            "@@ -{} +{} @@",
            range_shown(from_before, to_before),
            range_shown(from_after, to_after)
        );
        if !push(&mut out, header) {
            break;
        }
        let mut at = from_before;
        let mut full = false;
        'hunks: for (b, a) in &hunks[start..end] {
            for i in at..b.start {
                if !push(&mut out, line(' ', before[i as usize])) {
                    full = true;
                    break 'hunks;
                }
            }
            for i in b.clone() {
                if !push(&mut out, line('-', before[i as usize])) {
                    full = true;
                    break 'hunks;
                }
            }
            for i in a.clone() {
                if !push(&mut out, line('+', after[i as usize])) {
                    full = true;
                    break 'hunks;
                }
            }
            at = b.end;
        }
        if !full {
            for i in at..to_before {
                if !push(&mut out, line(' ', before[i as usize])) {
                    full = true;
                    break;
                }
            }
        }
        if full {
            break;
        }
        start = end;
    }
    (out, truncated)
}

/// `start,count` as a hunk header writes it, from 1 (`0,0` for nothing).
pub(super) fn range_shown(from: u32, to: u32) -> String {
    let count = to - from;
    match count {
        0 => format!("{from},0"),
        1 => format!("{}", from + 1),
        _ => format!("{},{count}", from + 1),
    }
}

/// Bytes from the repository as they may be shown: UTF-8 as `crate::report::text::shown` shows text (control
/// characters written `\xNN`), any byte that is not UTF-8 written `\xNN` too.
pub(super) fn printable_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&crate::report::text::printable(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// At most `MAX_LINE_CHARS` characters, "…" where it was cut.
pub(super) fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_LINE_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX_LINE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_diff_has_context_merged_hunks_and_a_bound() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n";
        let new = "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\nfifteen\n";
        let (lines, truncated) = unified(old.as_bytes(), new.as_bytes(), 3, 100);
        assert!(!truncated);
        assert_eq!(
            lines,
            [
                "@@ -1,6 +1,6 @@",
                " 1",
                " 2",
                "-3",
                "+three",
                " 4",
                " 5",
                " 6",
                "@@ -12,4 +12,4 @@",
                " 12",
                " 13",
                " 14",
                "-15",
                "+fifteen",
            ]
        );
        // Changes 6 lines apart share their context: one hunk.
        let new = "1\n2\nthree\n4\n5\n6\n7\n8\nnine\n10\n";
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let (lines, _) = unified(old.as_bytes(), new.as_bytes(), 3, 100);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("@@")).count(),
            1,
            "{lines:?}"
        );
        assert_eq!(lines[0], "@@ -1,10 +1,10 @@");
        // A new file, all added; and an empty one.
        let (lines, _) = unified(b"", b"a\nb\n", 3, 100);
        assert_eq!(lines, ["@@ -0,0 +1,2 @@", "+a", "+b"]);
        assert_eq!(
            unified(b"same\n", b"same\n", 3, 100).0,
            Vec::<String>::new()
        );
        // Bounded, and says so.
        let big: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let (lines, truncated) = unified(b"", big.as_bytes(), 3, 50);
        assert!(truncated && lines.len() == 50);
    }

    #[test]
    fn hostile_bytes_are_shown_escaped_and_cut() {
        #[rustfmt::skip]
        let table: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (b"\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
            (b"a\rb", "a\\x0db"),
            (b"caf\xc3\xa9 \xff\xfe", "café \\xff\\xfe"),
            ("\u{9b}31m".as_bytes(), "\\x9b31m"),
        ];
        for (bytes, want) in table {
            assert_eq!(printable_bytes(bytes), *want, "{bytes:?}");
        }
        let long = "x".repeat(5000);
        assert_eq!(clip(&long).chars().count(), MAX_LINE_CHARS);
        let (lines, _) = unified(b"", b"\x1b[31mred\n", 3, 10);
        assert_eq!(lines[1], "+\\x1b[31mred");
    }

    #[test]
    fn lines_are_counted_and_binaries_told() {
        assert_eq!(line_counts(b"a\nb\nc\n", b"a\nB\nc\nd\n"), (2, 1));
        assert!(is_binary(b"\x7fELF\0\0") && !is_binary(b"#!/bin/sh\n"));
        assert_eq!(
            (lines(b""), lines(b"a"), lines(b"a\n"), lines(b"a\nb")),
            (0, 1, 1, 2)
        );
    }

    #[test]
    fn only_so_many_lines_are_diffed_per_file_and_per_plan() {
        let mut budget = 3 * MAX_COUNTED_LINES;
        let most = MAX_COUNTED_LINES;
        #[rustfmt::skip]
        let table: &[(usize, usize, std::result::Result<(), &str>, usize)] = &[
            // old lines new lines  diffed or why not                 budget left
            (most,      most,       Ok(()),                           most),
            (most + 1,  0,          Err("large, 20001 -> 0 lines"),   most),
            (3,         most + 1,   Err("large, 3 -> 20001 lines"),   most),
            (most,      1,          Err("not counted"),               most),
            (most,      0,          Ok(()),                           0),
            (0,         1,          Err("not counted"),               0),
            (0,         0,          Ok(()),                           0),
        ];
        for (old, new, want, left) in table {
            let got = diffable(*old, *new, &mut budget);
            assert_eq!(got, want.map_err(String::from), "{old} {new}");
            assert_eq!(budget, *left, "{old} {new}");
        }
    }
}
