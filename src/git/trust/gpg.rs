//! OpenPGP signatures through `gpgv --keyring`: only the keys of that one file count (no trust
//! database, no user keyring), with an empty private GNUPGHOME so nothing of the host's GnuPG
//! setup takes part. One gpgv call costs about 3 ms, against a pure-Rust OpenPGP stack in the
//! binary.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Signer, Why};

/// gpgv's status output is a few lines; more than this is not gpgv talking.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// A private directory for one verification run, made on the first OpenPGP commit and removed
/// when the run ends: it is gpgv's GNUPGHOME and holds the signature file.
#[derive(Default)]
pub(super) struct Session {
    dir: Option<PathBuf>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Session {
    fn dir(&mut self) -> Result<PathBuf, Why> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        let dir = private_dir().map_err(|e| Why::Unsupported {
            what: format!(
                "no private directory for gpgv can be made in {} ({e}); check TMPDIR",
                std::env::temp_dir().display()
            ),
        })?;
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    /// Verifies `armored` over `payload` with the keys of `keyring` only.
    pub(super) fn verify(
        &mut self,
        keyring: &Path,
        payload: &[u8],
        armored: &[u8],
    ) -> Result<Signer, Why> {
        let dir = self.dir()?;
        let sig_path = dir.join("commit.sig");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&sig_path)?;
            file.write_all(armored)
        };
        write().map_err(|e| Why::Unsupported {
            what: format!(
                "the signature cannot be handed to gpgv ({e}); check {}",
                dir.display()
            ),
        })?;
        let status = run_gpgv(&dir, keyring, &sig_path, payload)?;
        judge(&status)
    }
}

fn private_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| std::io::Error::other("no random bytes"))?;
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("gitops-gpgv-{name}"));
        // create, not create_all: an existing path (someone else's) is never reused.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

/// Runs gpgv with the payload on stdin; returns its output (status lines and messages).
fn run_gpgv(home: &Path, keyring: &Path, sig: &Path, payload: &[u8]) -> Result<String, Why> {
    let expression = duct::cmd(
        "gpgv",
        [
            "--status-fd".as_ref(),
            "1".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            sig.as_os_str(),
            "-".as_ref(),
        ],
    )
    .env("GNUPGHOME", home)
    .env("LC_ALL", "C")
    .stdin_bytes(payload.to_vec())
    .stderr_to_stdout()
    .unchecked();
    let mut reader = expression.reader().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Why::Unsupported {
                what: "it carries an OpenPGP signature and gpgv is not installed; install gpgv (apt install gpgv, dnf install gnupg2)".to_string(),
            }
        } else {
            Why::Unsupported {
                what: format!("gpgv cannot be started ({e})"),
            }
        }
    })?;
    let mut output = Vec::new();
    let read = (&mut reader).take(OUTPUT_LIMIT).read_to_end(&mut output);
    // Dropping the reader kills gpgv if it is still talking past the limit.
    drop(reader);
    read.map_err(|e| Why::Unsupported {
        what: format!("gpgv's output cannot be read ({e})"),
    })?;
    Ok(String::from_utf8_lossy(&output).into_owned())
}

/// Decides from gpgv's `[GNUPG:]` status lines (GnuPG's doc/DETAILS). Any bad word wins over a
/// good one, so a signature file holding several signatures passes only if all of them do.
pub(super) fn judge(output: &str) -> Result<Signer, Why> {
    let mut good: Option<String> = None;
    let mut fingerprint: Option<String> = None;
    let mut expired_at: Option<String> = None;
    let mut refusal: Option<Why> = None;
    let mut missing: Option<String> = None;
    for line in output.lines() {
        let Some(status) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let mut words = status.split(' ');
        let keyword = words.next().unwrap_or("");
        let fields: Vec<&str> = words.collect();
        let user = || {
            fields
                .get(1..)
                .map(|rest| rest.join(" "))
                .unwrap_or_default()
        };
        match keyword {
            "GOODSIG" => {
                good.get_or_insert_with(user);
            }
            // VALIDSIG <fpr> <date> <timestamp> <expire> <version> <reserved> <pk-algo>
            // <hash-algo> <class> [<primary-key-fpr>]
            "VALIDSIG" => {
                let primary = fields.get(9).or(fields.first()).map(|s| s.to_string());
                if fingerprint.is_none() {
                    fingerprint = primary;
                }
            }
            "BADSIG" => refusal = Some(Why::BadSignature),
            "EXPKEYSIG" => {
                let user = user();
                refusal.get_or_insert(Why::NoLongerValid {
                    principal: user,
                    until: String::new(),
                });
            }
            "KEYEXPIRED" => expired_at = fields.first().map(|s| s.to_string()),
            "REVKEYSIG" => {
                refusal.get_or_insert(Why::NoLongerValid {
                    principal: user(),
                    until: "revoked".to_string(),
                });
            }
            "EXPSIG" => {
                refusal.get_or_insert(Why::NoLongerValid {
                    principal: user(),
                    until: "the signature's own expiry".to_string(),
                });
            }
            // ERRSIG <keyid> <pkalgo> <hashalgo> <sig_class> <time> <rc> [<fpr>]
            "ERRSIG" => {
                let key = fields
                    .get(6)
                    .filter(|f| !f.is_empty() && **f != "-")
                    .or(fields.first())
                    .map_or_else(String::new, |s| s.to_string());
                match fields.get(5).copied() {
                    Some("9") => missing = Some(key),
                    Some("4") => {
                        refusal.get_or_insert(Why::Unsupported {
                            what: "its OpenPGP signature uses an algorithm gpgv does not support; sign with an ed25519 or RSA key".to_string(),
                        });
                    }
                    _ => {
                        refusal.get_or_insert(Why::Unreadable {
                            what: format!("gpgv cannot check its OpenPGP signature ({status})"),
                        });
                    }
                }
            }
            "NO_PUBKEY" => {
                missing.get_or_insert_with(|| {
                    fields.first().map_or_else(String::new, |s| s.to_string())
                });
            }
            "NODATA" => {
                refusal.get_or_insert(Why::Unreadable {
                    what: "its OpenPGP signature holds no signature gpgv can read".to_string(),
                });
            }
            _ => {}
        }
    }
    if let Some(mut why) = refusal {
        if let Why::NoLongerValid { until, .. } = &mut why {
            if until.is_empty() {
                *until = expired_at
                    .as_deref()
                    .and_then(|at| at.parse::<i64>().ok())
                    .and_then(|at| jiff::Timestamp::from_second(at).ok())
                    .map_or_else(
                        || "its expiry".to_string(),
                        |at| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    );
            }
        }
        return Err(why);
    }
    if let Some(fingerprint) = missing {
        return Err(Why::UnknownKey { fingerprint });
    }
    match (good, fingerprint) {
        (Some(principal), Some(fingerprint)) => Ok(Signer {
            method: "openpgp".to_string(),
            principal,
            fingerprint,
        }),
        _ => {
            let said = output
                .lines()
                .find(|line| !line.starts_with("[GNUPG:]") && !line.trim().is_empty())
                .unwrap_or("no verdict");
            Err(Why::Unreadable {
                what: format!("gpgv gave no good signature ({})", said.trim()),
            })
        }
    }
}
