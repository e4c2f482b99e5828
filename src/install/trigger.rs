//! `gitops install-units --trigger`: gitops-trigger.socket, .service and .path (or links to the
//! packaged ones), the drop-ins for a non-default address, allow list or secret file, the
//! trigger's env file, and the webhook secret itself.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::envfile::env_text;
use super::units::{is_live, make_dir, systemctl, Item, Request};
use crate::exit::{fail, Exit, ResultExt};
use crate::trigger::options;

/// The unit files, compiled in: `units/` is their one source.
pub const SOCKET: &str = include_str!("../../units/gitops-trigger.socket");
pub const SERVICE: &str = include_str!("../../units/gitops-trigger.service");
pub const PATH_UNIT: &str = include_str!("../../units/gitops-trigger.path");

pub const DEFAULT_LISTEN: &str = "[::]:9419";
pub const DEFAULT_SECRET: &str = "/etc/gitops/trigger.secret";

pub(super) const ENV_FILE: &str = "etc/gitops/trigger.env";
const ETC_SOCKET: &str = "etc/systemd/system/gitops-trigger.socket";
const ETC_SERVICE: &str = "etc/systemd/system/gitops-trigger.service";
const ETC_PATH: &str = "etc/systemd/system/gitops-trigger.path";
const SOCKET_WANTS: &str = "etc/systemd/system/sockets.target.wants/gitops-trigger.socket";
const PATH_WANTS: &str = "etc/systemd/system/paths.target.wants/gitops-trigger.path";
const SOCKET_DROPIN: &str = "etc/systemd/system/gitops-trigger.socket.d/install-units.conf";
const SERVICE_DROPIN: &str = "etc/systemd/system/gitops-trigger.service.d/install-units.conf";

/// Every file the trigger may have installed: `--uninstall --trigger` removes these alone.
pub(super) const FILES: [&str; 8] = [
    ETC_SOCKET,
    ETC_SERVICE,
    ETC_PATH,
    SOCKET_WANTS,
    PATH_WANTS,
    SOCKET_DROPIN,
    SERVICE_DROPIN,
    ENV_FILE,
];

/// The files that hold the trigger's settings: a `--trigger` run that gives none keeps them.
const SETTINGS_FILES: [&str; 3] = [ENV_FILE, SOCKET_DROPIN, SERVICE_DROPIN];

/// Directories made for the trigger's files, removed when they end up empty.
pub(super) const OWN_DIRS: [&str; 4] = [
    "etc/systemd/system/gitops-trigger.socket.d",
    "etc/systemd/system/gitops-trigger.service.d",
    "etc/systemd/system/sockets.target.wants",
    "etc/systemd/system/paths.target.wants",
];

/// Where packages put the units (.rpm: /usr/lib, .deb: /lib), as the paths the enable links
/// name: (directory, socket, path unit).
const PACKAGED: [(&str, &str, &str); 2] = [
    (
        "/usr/lib/systemd/system",
        "/usr/lib/systemd/system/gitops-trigger.socket",
        "/usr/lib/systemd/system/gitops-trigger.path",
    ),
    (
        "/lib/systemd/system",
        "/lib/systemd/system/gitops-trigger.socket",
        "/lib/systemd/system/gitops-trigger.path",
    ),
];

/// The shortest secret `gitops trigger` accepts.
const MIN_SECRET: usize = 16;

/// gitops.service may start 5 times in 10 s (systemd's default StartLimitBurst=): pulses closer
/// together than this could reach it, and the path unit would then fail and start nothing more.
const MIN_INTERVAL_FLOOR: Duration = Duration::from_secs(3);

/// The trigger's flags of `install-units`. No `GITOPS_*` variables: like every other setting
/// of install-units, only what is typed goes into the files it writes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Also install the webhook trigger: gitops-trigger.socket, .service and .path, its env file /etc/gitops/trigger.env and its secret; with --uninstall, remove the trigger alone
    #[arg(long)]
    pub trigger: bool,

    /// Where the trigger listens: a port, ADDR:PORT or [IPV6]:PORT [default: [::]:9419, every address]
    #[arg(long, value_name = "ADDR", value_parser = parse_listen, requires = "trigger")]
    pub trigger_listen: Option<String>,

    /// Addresses allowed to post, as CIDRs separated by spaces or commas; the kernel drops the others before they reach the trigger [default: any]
    #[arg(long, value_name = "CIDRS", value_parser = parse_allow, requires = "trigger")]
    pub trigger_allow: Option<String>,

    /// The webhook secret's file on the machine; written (32 random bytes, hex, 0600) when it is missing on the running system [default: /etc/gitops/trigger.secret]
    #[arg(long, value_name = "FILE", value_parser = parse_secret_file, requires = "trigger")]
    pub trigger_secret_file: Option<PathBuf>,

    /// The URL path the forge posts to [default: /trigger]
    #[arg(long, value_name = "PATH", value_parser = options::parse_path, requires = "trigger")]
    pub trigger_path: Option<String>,

    /// Start at most one pass per this long, at least 3s [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_min_interval, requires = "trigger")]
    pub trigger_min_interval: Option<String>,
}

/// `9419`, `192.0.2.5:9419`, `[2001:db8::5]:9419`, written as systemd's `ListenStream=` takes it.
pub fn parse_listen(text: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{text:?} is not a listening address: write a port (9419), ADDR:PORT (192.0.2.5:9419) or [IPV6]:PORT ([2001:db8::5]:9419)"
        )
    };
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = text.parse().map_err(|_| bad())?;
        return match port {
            0 => Err(bad()),
            port => Ok(format!("[::]:{port}")),
        };
    }
    let addr: std::net::SocketAddr = text.parse().map_err(|_| bad())?;
    if addr.port() == 0 {
        return Err(bad());
    }
    Ok(addr.to_string())
}

/// The CIDRs as the trigger parses them, written back in their plain form.
pub fn parse_allow(text: &str) -> Result<String, String> {
    options::parse_cidrs(text).map(|cidrs| cidrs.to_string())
}

/// An absolute path that a unit file can hold as it is: no spaces, no `%` specifiers.
pub fn parse_secret_file(text: &str) -> Result<PathBuf, String> {
    let plain = text.starts_with('/')
        && text.len() <= 1024
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._+@".contains(&b))
        && !text.split('/').any(|part| part == "..");
    if plain {
        Ok(PathBuf::from(text))
    } else {
        Err(format!(
            "{text:?} cannot be the secret file: write an absolute path of letters, digits and / - . _ + @ (like {DEFAULT_SECRET})"
        ))
    }
}

pub fn parse_min_interval(text: &str) -> Result<String, String> {
    let interval = crate::config::parse_duration(text)?;
    if interval < MIN_INTERVAL_FLOOR {
        return Err(format!(
            "{:?} is too short: at least 3s, or gitops.service's start limit (5 in 10 s) would stop the path unit",
            text.trim()
        ));
    }
    Ok(text.trim().to_string())
}

impl Args {
    /// Whether this run says anything about the trigger's settings (the branch is one: the
    /// trigger ignores pushes to other branches).
    fn settings_given(&self, env: &[(String, String)]) -> bool {
        self.trigger_listen.is_some()
            || self.trigger_allow.is_some()
            || self.trigger_secret_file.is_some()
            || self.trigger_path.is_some()
            || self.trigger_min_interval.is_some()
            || env.iter().any(|(k, _)| k == "GITOPS_BRANCH")
    }
}

/// What to install for the trigger.
pub(super) struct Plan {
    pub items: Vec<Item>,
    /// Settings files left as they are: this run gave no trigger setting.
    pub keep: Vec<&'static str>,
    /// The secret file, as the running machine names it.
    pub secret: PathBuf,
}

pub(super) fn plan(req: &Request, manifest: &BTreeMap<String, String>) -> Plan {
    let mut items = Vec::new();
    match packaged(&req.root) {
        // The package's units stay the ones that run, so its upgrades take effect.
        Some((socket, path_unit)) => {
            items.push(Item::Link {
                path: SOCKET_WANTS,
                target: socket,
            });
            items.push(Item::Link {
                path: PATH_WANTS,
                target: path_unit,
            });
        }
        None => {
            for (path, text) in [
                (ETC_SOCKET, SOCKET),
                (ETC_SERVICE, SERVICE),
                (ETC_PATH, PATH_UNIT),
            ] {
                items.push(Item::File {
                    path,
                    text: text.to_string(),
                    mode: 0o644,
                });
            }
            // What `systemctl enable` would do, done by hand: an image build cannot run it.
            items.push(Item::Link {
                path: SOCKET_WANTS,
                target: "/etc/systemd/system/gitops-trigger.socket",
            });
            items.push(Item::Link {
                path: PATH_WANTS,
                target: "/etc/systemd/system/gitops-trigger.path",
            });
        }
    }
    let args = &req.trigger;
    if !args.settings_given(&req.env) {
        // Like gitops.env: a run without settings (enabling packaged units, say) leaves the
        // ones an earlier run wrote, so the allow list cannot be dropped by leaving it out.
        let keep: Vec<&'static str> = SETTINGS_FILES
            .into_iter()
            .filter(|p| manifest.contains_key(*p))
            .collect();
        let secret = if keep.contains(&SERVICE_DROPIN) {
            secret_in_dropin(&req.root).unwrap_or_else(|| PathBuf::from(DEFAULT_SECRET))
        } else {
            PathBuf::from(DEFAULT_SECRET)
        };
        return Plan {
            items,
            keep,
            secret,
        };
    }
    let secret = args
        .trigger_secret_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SECRET));
    let mut env = Vec::new();
    let mut add = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            env.push((key.to_string(), value.clone()));
        }
    };
    add("GITOPS_TRIGGER_PATH", &args.trigger_path);
    add("GITOPS_TRIGGER_MIN_INTERVAL", &args.trigger_min_interval);
    add("GITOPS_TRIGGER_ALLOW", &args.trigger_allow);
    let branch = req
        .env
        .iter()
        .find(|(k, _)| k == "GITOPS_BRANCH")
        .map(|(_, v)| v.clone());
    add("GITOPS_BRANCH", &branch);
    if !env.is_empty() {
        items.push(Item::File {
            path: ENV_FILE,
            text: env_text(
                "# Written by `gitops install-units --trigger`. gitops-trigger.service reads it\n\
                 # (EnvironmentFile=): the trigger's own settings, never gitops.env's.\n",
                &env,
            ),
            mode: 0o600,
        });
    }
    let listen = args
        .trigger_listen
        .as_deref()
        .filter(|l| *l != DEFAULT_LISTEN);
    let secret_moved = secret != Path::new(DEFAULT_SECRET);
    if let Some(text) = socket_dropin(
        listen,
        args.trigger_allow.as_deref(),
        secret_moved.then_some(&secret),
    ) {
        items.push(Item::File {
            path: SOCKET_DROPIN,
            text,
            mode: 0o644,
        });
    }
    if secret_moved {
        items.push(Item::File {
            path: SERVICE_DROPIN,
            text: format!(
                "# Written by `gitops install-units --trigger`: the secret is {} (--trigger-secret-file).\n\
                 # The empty line drops the unit's own /etc/gitops/trigger.secret.\n\
                 [Service]\n\
                 LoadCredential=\n\
                 LoadCredential={}:{}\n",
                secret.display(),
                options::CREDENTIAL,
                secret.display()
            ),
            mode: 0o644,
        });
    }
    Plan {
        items,
        keep: Vec::new(),
        secret,
    }
}

fn socket_dropin(
    listen: Option<&str>,
    allow: Option<&str>,
    secret: Option<&PathBuf>,
) -> Option<String> {
    if listen.is_none() && allow.is_none() && secret.is_none() {
        return None;
    }
    let mut text = String::from(
        "# Written by `gitops install-units --trigger` from its --trigger-* flags: rerun it to change them.\n",
    );
    if let Some(secret) = secret {
        text.push_str(&format!(
            "[Unit]\n\
             # --trigger-secret-file: no port is opened before this secret exists.\n\
             ConditionPathExists=\n\
             ConditionPathExists={}\n",
            secret.display()
        ));
    }
    if listen.is_some() || allow.is_some() {
        text.push_str("[Socket]\n");
    }
    if let Some(listen) = listen {
        text.push_str(&format!(
            "# --trigger-listen: the empty line drops the unit's own {DEFAULT_LISTEN}.\n\
             ListenStream=\n\
             ListenStream={listen}\n"
        ));
    }
    if let Some(allow) = allow {
        text.push_str(&format!(
            "# --trigger-allow: the kernel drops packets from any other address (the trigger\n\
             # checks them again itself, with GITOPS_TRIGGER_ALLOW).\n\
             IPAddressAllow=\n\
             IPAddressAllow={allow}\n"
        ));
    }
    Some(text)
}

/// The secret file a kept service drop-in names.
fn secret_in_dropin(root: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(root.join(SERVICE_DROPIN)).ok()?;
    let prefix = format!("LoadCredential={}:", options::CREDENTIAL);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .next_back()
        .and_then(|p| parse_secret_file(p.trim()).ok())
}

/// The enable links' targets when the package installed all three trigger units under the
/// root. On a merged-/usr system both directories hold them: the one the existing link names,
/// else the one the timer's link names (the package's own `systemctl enable` chose it).
fn packaged(root: &Path) -> Option<(&'static str, &'static str)> {
    let complete = |dir: &str| {
        [
            "gitops-trigger.socket",
            "gitops-trigger.service",
            "gitops-trigger.path",
        ]
        .iter()
        .all(|unit| root.join(dir.trim_start_matches('/')).join(unit).is_file())
    };
    let present: Vec<(&str, &'static str, &'static str)> = PACKAGED
        .into_iter()
        .filter(|(dir, ..)| complete(dir))
        .collect();
    let existing = fs::read_link(root.join(SOCKET_WANTS)).ok();
    let timer = fs::read_link(root.join(super::units::WANTS)).ok();
    present
        .iter()
        .find(|(_, socket, _)| existing.as_deref() == Some(Path::new(socket)))
        .or_else(|| {
            present
                .iter()
                .find(|(dir, ..)| timer.as_deref().and_then(Path::parent) == Some(Path::new(dir)))
        })
        .or(present.first())
        .map(|(_, socket, path_unit)| (*socket, *path_unit))
}

/// Say that the package's units are the ones enabled, as for the timer.
pub(super) fn note_packaged(req: &Request, items: &[Item]) {
    if let Some(dir) = super::units::packaged_dir(items, SOCKET_WANTS) {
        out!(
            "gitops-trigger.socket, .service and .path come from the package in {}: enabling those",
            in_root(&req.root, dir).display()
        );
    }
}

/// The secret file inside the root.
fn in_root(root: &Path, secret: &Path) -> PathBuf {
    root.join(secret.strip_prefix("/").unwrap_or(secret))
}

/// Refuse, before anything is written, a secret path that holds something else than a file.
pub(super) fn check_secret(req: &Request, secret: &Path) -> Result<()> {
    let full = in_root(&req.root, secret);
    match fs::symlink_metadata(&full) {
        Ok(meta) if !meta.is_file() => Err(fail(
            Exit::Usage,
            format!(
                "{} is not a regular file: the trigger's secret must be one (32+ random bytes, mode 0600)",
                full.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Write the secret when it is missing on the running system; an existing one is kept as it
/// is. Returns whether one was written. Its text is never shown but this once, on a terminal.
pub(super) fn ensure_secret(req: &Request, secret: &Path) -> Result<bool> {
    let full = in_root(&req.root, secret);
    match fs::symlink_metadata(&full) {
        Ok(meta) => {
            if !meta.is_file() {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "{} is not a regular file: the trigger's secret must be one (32+ random bytes, mode 0600)",
                        full.display()
                    ),
                ));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                say!(
                    "gitops: warning: the trigger secret {} is readable by group or others: chmod 600 it",
                    full.display()
                );
            }
            // The trigger's own floor (it refuses to start below it); the text is never shown.
            let short = fs::read(&full).is_ok_and(|b| b.trim_ascii().len() < MIN_SECRET);
            if short {
                say!(
                    "gitops: warning: the trigger secret {} is shorter than {MIN_SECRET} characters, which the trigger refuses: write a random one (openssl rand -hex 32)",
                    full.display()
                );
            }
            return Ok(false);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).or_exit(Exit::Usage, || {
                format!("cannot look at {}: is the root readable?", full.display())
            })
        }
    }
    if !is_live(&req.root) {
        say!(
            "gitops: warning: {} was not written: {} is not the running system, and a secret baked into an image would be shared by every machine made from it. Write it at first boot (32+ random bytes, mode 0600, e.g. cloud-init write_files), or run `gitops install-units --trigger` on the machine; the socket listens once it exists",
            full.display(),
            req.root.display()
        );
        return Ok(false);
    }
    if req.dry_run {
        out!(
            "would write {} (mode 0600): a new random webhook secret, shown once when written",
            full.display()
        );
        return Ok(false);
    }
    let hex = random_secret()?;
    write_secret(&full, &hex)?;
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        out!(
            "wrote {} (mode 0600): the webhook secret, for the forge's webhook form. It is shown this once:\n\n    {hex}\n",
            full.display()
        );
    } else {
        // A log (cloud-init's output, a CI job's) would keep it for anyone who reads the log.
        out!(
            "wrote {} (mode 0600): the webhook secret, not shown because stdout is not a terminal; read it with: cat {}",
            full.display(),
            secret.display()
        );
    }
    Ok(true)
}

/// 32 random bytes from the system's generator, as 64 lowercase hex digits.
fn random_secret() -> Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| {
            fail(
                Exit::Internal,
                "the system's random generator failed: no secret was written",
            )
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Written under a temporary name and linked into place, so that the file never exists half
/// written and an existing one (a race with an administrator) is never replaced.
fn write_secret(full: &Path, hex: &str) -> Result<()> {
    let parent = full.parent().unwrap_or(Path::new("/"));
    let mode = if parent.ends_with("etc/gitops") {
        0o700
    } else {
        0o755
    };
    make_dir(parent, mode).or_exit(Exit::Usage, || {
        format!("cannot create {}: is the root writable?", parent.display())
    })?;
    let tmp = parent.join(format!(
        ".{}.gitops-new-{}",
        full.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let written = (|| -> std::io::Result<()> {
        let mut file = crate::files::create_new(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(hex.as_bytes())?;
        file.sync_all()?;
        fs::hard_link(&tmp, full)?;
        fs::File::open(parent)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    written.or_exit(Exit::Usage, || {
        format!("cannot write {}: is the root writable?", full.display())
    })
}

/// With --now on the running system: the socket and the path unit enabled and started. A
/// socket already listening is restarted first when its files changed, so that a new address,
/// allow list or env file takes effect (its running trigger stops with it).
pub(super) fn start(req: &Request, changed: bool) -> Result<()> {
    if changed {
        systemctl(req, &["try-restart", "gitops-trigger.socket"])?;
    }
    systemctl(
        req,
        &[
            "enable",
            "--now",
            "gitops-trigger.socket",
            "gitops-trigger.path",
        ],
    )?;
    out!("gitops-trigger.socket and gitops-trigger.path are enabled and active");
    Ok(())
}

/// Before the trigger's files go from the running system: stop and disable its units (the
/// service stops with the socket it requires).
pub(super) fn stop(req: &Request) -> Result<()> {
    systemctl(
        req,
        &[
            "disable",
            "--now",
            "gitops-trigger.socket",
            "gitops-trigger.path",
        ],
    )
}

/// Whether the manifest says the trigger is installed.
pub(super) fn installed(manifest: &BTreeMap<String, String>) -> bool {
    manifest.contains_key(SOCKET_WANTS) || manifest.contains_key(PATH_WANTS)
}

/// The secret file the installed trigger reads: read before its drop-in goes.
pub(super) fn installed_secret(root: &Path) -> PathBuf {
    secret_in_dropin(root).unwrap_or_else(|| PathBuf::from(DEFAULT_SECRET))
}

/// Said when the trigger goes: the secret stays, and why.
pub(super) fn note_secret_kept(req: &Request, secret: &Path) {
    let full = in_root(&req.root, secret);
    if full.exists() {
        out!(
            "kept {}: the forge's webhook still holds this secret, and a trigger installed again uses it; remove it (and the forge's webhook) if the trigger is gone for good",
            full.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The units and the trigger agree on the names they share.
    #[test]
    fn the_units_name_what_the_trigger_uses() {
        let has = |text: &str, line: String| text.lines().any(|l| l == line);
        assert!(has(
            PATH_UNIT,
            format!(
                "PathChanged={}/{}",
                options::DEFAULT_STATE_DIR,
                options::PULSE
            )
        ));
        assert!(has(
            SERVICE,
            format!("LoadCredential={}:{DEFAULT_SECRET}", options::CREDENTIAL)
        ));
        let state = options::DEFAULT_STATE_DIR
            .strip_prefix("/var/lib/")
            .unwrap();
        assert!(has(SERVICE, format!("StateDirectory={state}")));
        assert!(has(SOCKET, format!("ListenStream={DEFAULT_LISTEN}")));
        assert!(has(SOCKET, format!("ConditionPathExists={DEFAULT_SECRET}")));
    }

    #[test]
    fn listen_addresses_as_a_table() {
        let table: [(&str, Option<&str>); 11] = [
            ("9419", Some("[::]:9419")),
            ("80", Some("[::]:80")),
            ("192.0.2.5:9419", Some("192.0.2.5:9419")),
            ("[2001:db8::5]:443", Some("[2001:db8::5]:443")),
            ("[::]:9419", Some("[::]:9419")),
            ("0", None),
            ("65536", None),
            ("192.0.2.5", None),
            ("2001:db8::5:9419", None),
            ("host.example:9419", None),
            ("192.0.2.5:0", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_listen(text).ok().as_deref(), want, "{text}");
        }
        assert!(parse_listen("x").unwrap_err().contains("[IPV6]:PORT"));
    }

    #[test]
    fn secret_files_are_absolute_and_plain() {
        assert!(parse_secret_file("/etc/gitops/trigger.secret").is_ok());
        assert!(parse_secret_file("/srv/keys/hook@prod.key").is_ok());
        for bad in [
            "trigger.secret",
            "/etc/a b",
            "/etc/%n",
            "/etc/../x",
            "",
            "/etc/x\n",
        ] {
            assert!(parse_secret_file(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn min_intervals_below_the_start_limit_are_refused() {
        assert_eq!(parse_min_interval("10s").unwrap(), "10s");
        assert_eq!(parse_min_interval("3s").unwrap(), "3s");
        assert!(parse_min_interval("2s")
            .unwrap_err()
            .contains("at least 3s"));
        assert!(parse_min_interval("soon").is_err());
    }

    #[test]
    fn the_secret_is_64_hex_digits_and_never_the_same() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_socket_dropin_holds_only_what_differs() {
        assert_eq!(socket_dropin(None, None, None), None);
        let text = socket_dropin(Some("192.0.2.5:80"), None, None).unwrap();
        assert!(
            text.contains("ListenStream=\nListenStream=192.0.2.5:80\n"),
            "{text}"
        );
        assert!(
            !text.contains("IPAddressAllow") && !text.contains("[Unit]"),
            "{text}"
        );
        let secret = PathBuf::from("/srv/s");
        let text = socket_dropin(None, Some("10.0.0.0/8"), Some(&secret)).unwrap();
        assert!(
            text.contains("IPAddressAllow=\nIPAddressAllow=10.0.0.0/8\n"),
            "{text}"
        );
        assert!(
            text.contains("ConditionPathExists=\nConditionPathExists=/srv/s\n"),
            "{text}"
        );
        assert!(!text.contains("ListenStream"), "{text}");
    }
}
