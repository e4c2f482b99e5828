//! SSHSIG verification in process with the `ssh-key` crate, then the allowed_signers policy
//! (namespaces, valid-after, valid-before), which the crate leaves to its caller.

use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};

use super::signers::AllowedSigners;
use super::{Signer, Why};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const NAMESPACE: &str = "git";

/// Verifies `armored` (an SSH SIGNATURE block) over `payload`, then finds an allowed_signers
/// line for its key that allows "git" at `now` (seconds since the epoch).
pub(super) fn verify(
    signers: &AllowedSigners,
    payload: &[u8],
    armored: &[u8],
    now: i64,
) -> Result<Signer, Why> {
    let sig = SshSig::from_pem(armored).map_err(|e| Why::Unreadable {
        what: format!("its SSH signature does not parse ({e})"),
    })?;
    let key = sig.public_key();
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let mut lines = signers.lines_for(key).peekable();
    if lines.peek().is_none() {
        return Err(Why::UnknownKey { fingerprint });
    }
    if let Algorithm::Rsa { hash: None } = sig.signature().algorithm() {
        return Err(Why::Unsupported {
            what: "its RSA signature uses SHA-1 (ssh-rsa), which is not accepted; sign again with a current ssh-keygen (rsa-sha2-512)".to_string(),
        });
    }
    if sig.namespace() != NAMESPACE {
        // A signature made for another purpose (a file, an e-mail) must not count as a commit's,
        // and is not "altered after signing" either: say what it was made for. The namespace is
        // the signer's text, so it is shown escaped and cut short.
        let namespace: String = sig.namespace().chars().take(40).collect();
        return Err(Why::Unsupported {
            what: format!(
                "its SSH signature was made for the namespace {namespace:?}, not \"git\", so it does not sign a commit; sign the commit itself (git commit -S)"
            ),
        });
    }
    // The matching line's key was accepted at parse time, so a failure here is the signature's.
    PublicKey::new(key.clone(), "")
        .verify(NAMESPACE, payload, &sig)
        .map_err(|_| Why::BadSignature)?;

    let mut refusal: Option<Why> = None;
    for line in lines {
        if !line.allows_namespace(NAMESPACE) {
            refusal.get_or_insert_with(|| Why::PrincipalNotAllowed {
                principal: line.principals.clone(),
                fingerprint: fingerprint.clone(),
            });
            continue;
        }
        // ssh-keygen's own comparisons: valid from valid-after on, up to and with valid-before.
        let why = match (&line.valid_after, &line.valid_before) {
            (Some(after), _) if now < after.at => Why::NotYetValid {
                principal: line.principals.clone(),
                from: after.shown.clone(),
            },
            (_, Some(before)) if now > before.at => Why::NoLongerValid {
                principal: line.principals.clone(),
                until: before.shown.clone(),
            },
            _ => {
                return Ok(Signer {
                    method: "ssh".to_string(),
                    principal: line.principals.clone(),
                    fingerprint,
                })
            }
        };
        // A line that allows git but is out of its time says more than one that never allowed git.
        if !matches!(
            refusal,
            Some(Why::NotYetValid { .. } | Why::NoLongerValid { .. })
        ) {
            refusal = Some(why);
        }
    }
    Err(refusal.unwrap_or(Why::UnknownKey { fingerprint }))
}
