//! The options that say which commits may run, and how fresh the branch must be.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::signers::AllowedSigners;
use super::{Trust, VerifyMode};
use crate::exit::{fail, Exit};

/// Commit signatures and freshness (`gitops sync`).
#[derive(clap::Args, Debug, Clone)]
pub struct TrustOptions {
    /// Apply only commits signed by a key in this file (OpenSSH allowed_signers, as git's gpg.ssh.allowedSignersFile)
    #[arg(long, env = "GITOPS_ALLOWED_SIGNERS", value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,

    /// Apply only commits signed by a key in this OpenPGP keyring (binary, as `gpg --export` writes it), checked with gpgv
    #[arg(long, env = "GITOPS_GPG_KEYRING", value_name = "FILE")]
    pub gpg_keyring: Option<PathBuf>,

    /// What must be signed: tip (the commit applied) or range (every commit since the applied one) [default: tip, with signers given]
    #[arg(long, env = "GITOPS_VERIFY", value_enum)]
    pub verify: Option<VerifyMode>,

    /// With --verify range, check only the first-parent chain (merge commits made and signed by a forge's web UI)
    #[arg(long, env = "GITOPS_VERIFY_FIRST_PARENT", value_parser = clap::builder::BoolishValueParser::new())]
    pub verify_first_parent: bool,

    /// Report the branch as stale when its tip was committed longer ago than this (7d): a Git host may be withholding new commits [default: off]
    #[arg(long, env = "GITOPS_MAX_COMMIT_AGE", value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub max_commit_age: Option<Duration>,
}

/// The largest allowed_signers file read: a line is about 100 bytes (ed25519) to 600 (RSA).
const MAX_SIGNERS_FILE: u64 = 1024 * 1024;

impl TrustOptions {
    /// The signature policy, or None when no signers are given (every commit runs, as before).
    pub fn resolve(&self) -> Result<Option<Trust>> {
        let usage = |why: String| fail(Exit::Usage, why);
        if self.allowed_signers.is_none() && self.gpg_keyring.is_none() {
            if let Some(mode) = self.verify {
                let mode = format!("{mode:?}").to_lowercase();
                return Err(usage(format!(
                    "--verify {mode} needs the keys to verify with: give --allowed-signers FILE (SSH) or --gpg-keyring FILE (OpenPGP)"
                )));
            }
            if self.verify_first_parent {
                return Err(usage(
                    "--verify-first-parent needs --verify range and --allowed-signers or --gpg-keyring".into(),
                ));
            }
            return Ok(None);
        }
        let mode = self.verify.unwrap_or(VerifyMode::Tip);
        if self.verify_first_parent && mode != VerifyMode::Range {
            return Err(usage(
                "--verify-first-parent only applies to --verify range: add --verify range, or drop it".into(),
            ));
        }
        let signers = match &self.allowed_signers {
            Some(path) => Some(read_signers(path)?),
            None => None,
        };
        let gpg_keyring = match &self.gpg_keyring {
            Some(path) => Some(check_keyring(path)?),
            None => None,
        };
        Ok(Some(Trust {
            signers,
            gpg_keyring,
            mode,
            first_parent: self.verify_first_parent,
        }))
    }

    /// --max-commit-age, with 0 meaning off.
    pub fn max_commit_age(&self) -> Option<Duration> {
        self.max_commit_age.filter(|age| !age.is_zero())
    }
}

fn read_signers(path: &Path) -> Result<AllowedSigners> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    check_anchor(&path, "--allowed-signers", "the allowed signers file")?;
    let bytes = crate::config::read_regular_file(&path, MAX_SIGNERS_FILE).map_err(|e| {
        fail(
            Exit::Usage,
            format!(
                "cannot read the allowed signers file {} ({e}): point --allowed-signers at a file of `principal key` lines",
                path.display()
            ),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        fail(
            Exit::Usage,
            format!(
                "the allowed signers file {} is not UTF-8 text: write it as ssh-keygen(1) describes (principal key-type base64)",
                path.display()
            ),
        )
    })?;
    let signers = AllowedSigners::parse(&text).map_err(|why| {
        fail(
            Exit::Usage,
            format!("the allowed signers file {}: {why}", path.display()),
        )
    })?;
    if signers.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!(
                "the allowed signers file {} lists no keys, so no commit could ever be applied: add a line `principal key-type base64` per signer",
                path.display()
            ),
        ));
    }
    Ok(signers)
}

fn check_keyring(path: &Path) -> Result<PathBuf> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    check_anchor(&path, "--gpg-keyring", "the OpenPGP keyring")?;
    let mut head = [0u8; 10];
    let read = crate::config::open_regular(&path).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut head)
    });
    match read {
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "cannot read the OpenPGP keyring {} ({e}): point --gpg-keyring at the file `gpg --export KEYID > FILE` writes",
                    path.display()
                ),
            ))
        }
        Ok(0) => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "the OpenPGP keyring {} is empty, so no commit could ever be applied: write it with gpg --export KEYID > {}",
                    path.display(),
                    path.display()
                ),
            ))
        }
        Ok(_) if head.starts_with(b"-----") => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "the OpenPGP keyring {} is ASCII-armoured and gpgv reads only binary keyrings: convert it with gpg --dearmor",
                    path.display()
                ),
            ))
        }
        Ok(_) => {}
    }
    if which("gpgv").is_none() {
        return Err(fail(
            Exit::Usage,
            "--gpg-keyring needs gpgv, which is not on PATH: install it (Debian: apt install gpgv; Fedora: dnf install gnupg2)".to_string(),
        ));
    }
    Ok(path)
}

/// The keys that decide what runs as root are trusted like the entry point itself: only root
/// or the user running gitops may change the file or swap it through a directory above it.
fn check_anchor(path: &Path, option: &str, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(
            Exit::Usage,
            format!(
                "cannot read {what} {} ({e}): check {option}",
                path.display()
            ),
        )
    })?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(fail(
            Exit::Usage,
            format!(
                "{what} {} belongs to uid {}, who could add their own key to it: run chown root {}",
                path.display(),
                meta.uid(),
                path.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(fail(
            Exit::Usage,
            format!(
                "{what} {} is writable by group or others (mode {mode:04o}), who could add their own key to it: run chmod go-w {}",
                path.display(),
                path.display()
            ),
        ));
    }
    // The whole path, not its parent: a symlink to the file is followed there, and the
    // directories above its target are checked too (metadata() above saw only the target).
    if let Some(problem) = crate::pass::guard::ancestor_problem(path, what) {
        return Err(fail(Exit::Usage, problem));
    }
    Ok(())
}

/// The first executable called `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}
