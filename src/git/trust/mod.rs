//! Commit signatures: only commits signed by an allowed SSH key (checked in process) or by a key
//! of an OpenPGP keyring (checked by gpgv) may be applied; validity is judged at the current
//! time, never at the commit's own date, which the signer chooses.

mod gpg;
pub mod options;
pub mod signers;
mod ssh;

use std::fmt;

use gix::ObjectId;

/// What must be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyMode {
    /// The commit to apply only.
    Tip,
    /// Every commit between the applied one and the commit to apply.
    Range,
}

/// Who may sign, and what must be signed.
#[derive(Debug, Clone)]
pub struct Trust {
    pub signers: Option<signers::AllowedSigners>,
    /// Absolute path; config has checked the file.
    pub gpg_keyring: Option<std::path::PathBuf>,
    pub mode: VerifyMode,
    pub first_parent: bool,
}

/// The signer of a verified commit, as recorded in state, status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// "ssh" or "openpgp".
    pub method: String,
    /// ssh: the principals field of the allowed_signers line that matched; openpgp: the key's
    /// user id.
    pub principal: String,
    /// ssh: `SHA256:…` as `ssh-keygen -l` prints it; openpgp: the primary key's fingerprint.
    pub fingerprint: String,
}

/// A verification that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer of the tip.
    pub signer: Signer,
    /// How many commits were verified.
    pub checked: usize,
}

/// Why a commit is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    Unsigned,
    /// The key is in no allowed_signers line, or not in the keyring.
    UnknownKey {
        fingerprint: String,
    },
    /// The signature does not match the payload.
    BadSignature,
    /// valid-after is still in the future.
    NotYetValid {
        principal: String,
        from: String,
    },
    /// valid-before has passed; OpenPGP: the key expired (`until` its expiry) or was revoked
    /// (`until` is "revoked").
    NoLongerValid {
        principal: String,
        until: String,
    },
    /// The key's lines do not allow the namespace "git".
    PrincipalNotAllowed {
        principal: String,
        fingerprint: String,
    },
    /// A key, algorithm or signature kind this verifier cannot check, or nothing configured to
    /// check it.
    Unsupported {
        what: String,
    },
    /// The commit object or its signature cannot be read or parsed.
    Unreadable {
        what: String,
    },
}

/// A commit that may not be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub commit: ObjectId,
    pub why: Why,
}

/// The line of the configuration that decides a key: an SSH fingerprint is looked up in
/// --allowed-signers, anything else in --gpg-keyring.
fn source(fingerprint: &str) -> &'static str {
    if fingerprint.starts_with("SHA256:") {
        "--allowed-signers"
    } else {
        "--gpg-keyring"
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let commit = self.commit.to_hex_with_len(12);
        match &self.why {
            Why::Unsigned => write!(
                f,
                "commit {commit} is not signed; sign it (git commit -S) with a key listed in --allowed-signers or --gpg-keyring"
            ),
            Why::UnknownKey { fingerprint } => write!(
                f,
                "commit {commit} is signed by {fingerprint}, which is in no line of {}; add the key if it may deploy",
                source(fingerprint)
            ),
            Why::BadSignature => write!(
                f,
                "commit {commit} carries a signature that does not match its content (altered after signing, or forged); find who pushed it and push a correctly signed commit"
            ),
            Why::NotYetValid { principal, from } => write!(
                f,
                "commit {commit} is signed by {principal}, whose key is valid only from {from} (valid-after); wait, or correct that line of --allowed-signers"
            ),
            Why::NoLongerValid { principal, until } if until == "revoked" => write!(
                f,
                "commit {commit} is signed by {principal}, whose OpenPGP key is revoked; sign with a current key in --gpg-keyring"
            ),
            Why::NoLongerValid { principal, until } => write!(
                f,
                "commit {commit} is signed by {principal}, whose key is valid only before {until}; sign with a current key, or extend the key's validity (valid-before, or the OpenPGP expiry)"
            ),
            Why::PrincipalNotAllowed { principal, fingerprint } => write!(
                f,
                "commit {commit} is signed by {principal} ({fingerprint}), whose --allowed-signers lines do not allow the namespace \"git\"; add git to its namespaces= if it may deploy"
            ),
            Why::Unsupported { what } => write!(f, "commit {commit} cannot be verified: {what}"),
            Why::Unreadable { what } => write!(
                f,
                "commit {commit} cannot be verified because {what}; fetch again, and check the repository if it persists"
            ),
        }
    }
}

impl std::error::Error for Untrusted {}

/// tip mode: the tip only. range mode: every commit reachable from tip and not from `applied`
/// (with first_parent: only tip's first-parent chain down to `applied`); with applied None
/// (first apply) only the tip. Returns the first failure met, naming that commit.
pub fn verify(
    repo: &gix::Repository,
    trust: &Trust,
    applied: Option<ObjectId>,
    tip: ObjectId,
    now: time::OffsetDateTime,
) -> Result<Verified, Untrusted> {
    let now = now.unix_timestamp();
    let mut gpg = gpg::Session::default();
    let untrusted = |commit: ObjectId| move |why: Why| Untrusted { commit, why };
    let signer = verify_commit(repo, trust, tip, now, &mut gpg).map_err(untrusted(tip))?;
    let mut checked = 1;
    let range_from = match (trust.mode, applied) {
        (VerifyMode::Range, Some(applied)) if applied != tip => applied,
        _ => return Ok(Verified { signer, checked }),
    };
    let walk_error = |e: &dyn fmt::Display| Why::Unreadable {
        what: format!("the history between it and the applied commit cannot be walked ({e})"),
    };
    let mut platform = repo.rev_walk([tip]).with_hidden([range_from]);
    if trust.first_parent {
        platform = platform.first_parent_only();
    }
    let walk = platform.all().map_err(|e| untrusted(tip)(walk_error(&e)))?;
    // The commit whose parents the walk was reading when it failed: the one to name.
    let mut last = tip;
    for info in walk {
        let info = info.map_err(|e| untrusted(last)(walk_error(&e)))?;
        if info.id == tip {
            continue;
        }
        last = info.id;
        verify_commit(repo, trust, info.id, now, &mut gpg).map_err(untrusted(info.id))?;
        checked += 1;
    }
    Ok(Verified { signer, checked })
}

const SSH_ARMOR: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &[u8] = b"-----BEGIN PGP SIGNATURE-----";

fn verify_commit(
    repo: &gix::Repository,
    trust: &Trust,
    id: ObjectId,
    now: i64,
    gpg: &mut gpg::Session,
) -> Result<Signer, Why> {
    let commit = repo.find_commit(id).map_err(|e| Why::Unreadable {
        what: format!("its object cannot be read ({e})"),
    })?;
    let (signature, signed) = commit
        .signature()
        .map_err(|e| Why::Unreadable {
            what: format!("its object does not parse ({e})"),
        })?
        .ok_or(Why::Unsigned)?;
    let payload = strip_signature_headers(&signed.to_bstring());
    let signature: &[u8] = signature.as_ref();
    if signature.starts_with(SSH_ARMOR) {
        match &trust.signers {
            Some(signers) => ssh::verify(signers, &payload, signature, now),
            None => Err(Why::Unsupported {
                what: "it carries an SSH signature and no --allowed-signers is configured; add the signer to an --allowed-signers file".to_string(),
            }),
        }
    } else if signature.starts_with(PGP_ARMOR) {
        match &trust.gpg_keyring {
            Some(keyring) => gpg.verify(keyring, &payload, signature),
            None => Err(Why::Unsupported {
                what: "it carries an OpenPGP signature and no --gpg-keyring is configured; export the signer's key into a --gpg-keyring file".to_string(),
            }),
        }
    } else {
        Err(Why::Unsupported {
            what:
                "its signature is neither SSH nor OpenPGP (X.509?); sign with an SSH or OpenPGP key"
                    .to_string(),
        })
    }
}

/// The signed payload as git computes it: the commit without any `gpgsig` or `gpgsig-sha256`
/// header. gix removes only the header of the repository's own hash, so a commit signed for both
/// hashes would otherwise keep the other one and never verify.
fn strip_signature_headers(object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(object.len());
    let mut rest = object;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |at| at + 1);
        let (line, after) = rest.split_at(end);
        if line == b"\n" {
            // The blank line that ends the headers: the message follows untouched.
            out.extend_from_slice(rest);
            break;
        }
        if line.starts_with(b" ") && skipping {
            rest = after;
            continue;
        }
        skipping = line.starts_with(b"gpgsig ") || line.starts_with(b"gpgsig-sha256 ");
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests;
