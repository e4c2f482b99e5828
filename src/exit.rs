//! Exit codes, and the marker that carries one from the failing spot up to `main`.

use std::fmt;

/// The documented exit codes of every `gitops` command (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Up to date, or the new commit applied.
    Ok,
    /// The entry point failed (non-zero exit or timeout).
    ApplyFailed,
    /// Usage or configuration error.
    Usage,
    /// Fetch failed: network, authentication, missing repository or branch.
    FetchFailed,
    /// The remote no longer descends from the applied commit.
    Refused,
    /// The commit is not signed by a trusted key.
    #[allow(dead_code)] // signature checks arrive with their own issue
    Untrusted,
    /// Anything we did not foresee.
    Internal,
    /// Another pass holds the lock.
    Locked,
    /// `gitops plan` only: the next pass would run the entry point.
    WouldApply,
}

impl From<Exit> for i32 {
    fn from(code: Exit) -> i32 {
        match code {
            Exit::Ok => 0,
            Exit::ApplyFailed => 1,
            Exit::Usage => 2,
            Exit::FetchFailed => 3,
            Exit::Refused => 4,
            Exit::Untrusted => 5,
            Exit::Internal => 70,
            Exit::Locked => 75,
            Exit::WouldApply => 10,
        }
    }
}

/// An error message that also decides the exit code. Attach it with
/// `.context(Coded::new(Exit::FetchFailed, "…"))` or return it with `Err(Coded::new(..).into())`;
/// `main` picks the outermost one in the chain.
#[derive(Debug)]
pub struct Coded {
    pub code: Exit,
    message: String,
}

impl Coded {
    pub fn new(code: Exit, message: impl Into<String>) -> Self {
        Coded {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Build an `anyhow::Error` that exits with `code`.
pub fn fail(code: Exit, message: impl Into<String>) -> anyhow::Error {
    Coded::new(code, message).into()
}

/// The exit code an error maps to: the outermost `Coded` in its chain, else internal error.
pub fn code_of(err: &anyhow::Error) -> Exit {
    err.downcast_ref::<Coded>()
        .map(|c| c.code)
        .unwrap_or(Exit::Internal)
}

/// Extension to attach an exit code and an operator-facing sentence to any error.
pub trait ResultExt<T> {
    fn or_exit(self, code: Exit, message: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn or_exit(self, code: Exit, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(Coded::new(code, message())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_match_the_documented_table() {
        let table = [
            (Exit::Ok, 0),
            (Exit::ApplyFailed, 1),
            (Exit::Usage, 2),
            (Exit::FetchFailed, 3),
            (Exit::Refused, 4),
            (Exit::Untrusted, 5),
            (Exit::Internal, 70),
            (Exit::Locked, 75),
            (Exit::WouldApply, 10),
        ];
        for (code, number) in table {
            assert_eq!(i32::from(code), number, "{code:?}");
        }
    }

    #[test]
    fn outermost_marker_wins_and_plain_errors_are_internal() {
        let plain = anyhow::anyhow!("boom");
        assert_eq!(code_of(&plain), Exit::Internal);

        let inner: anyhow::Result<()> = Err(fail(Exit::FetchFailed, "inner"));
        let err = inner.context(Coded::new(Exit::Usage, "outer")).unwrap_err();
        assert_eq!(code_of(&err), Exit::Usage);

        let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk"));
        let err = io
            .or_exit(Exit::FetchFailed, || "could not".into())
            .unwrap_err();
        assert_eq!(code_of(&err), Exit::FetchFailed);
        assert_eq!(format!("{err:#}"), "could not: disk");
    }
}
