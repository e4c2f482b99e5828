//! The options of `gitops trigger`, and the parsers install-units shares to check the same
//! values before it writes them into the trigger's env file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;

/// Where systemd's `StateDirectory=gitops-trigger` puts the trigger's files; `gitops status`
/// reads the counters from there too.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/gitops-trigger";
/// The credential name gitops-trigger.service loads the secret under (`LoadCredential=`).
pub const CREDENTIAL: &str = "trigger-secret";
/// The file the path unit watches: writing it is the trigger's only action.
pub const PULSE: &str = "pulse";
/// The counters and the last trigger, for status and metrics.
pub const STATS: &str = "stats.json";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// File holding the webhook secret (also the forge's "secret"), readable by its owner alone [default: $CREDENTIALS_DIRECTORY/trigger-secret]
    #[arg(long, env = "GITOPS_TRIGGER_SECRET_FILE", value_name = "FILE")]
    pub trigger_secret_file: Option<PathBuf>,

    /// The URL path the forge posts to; every other path answers 404
    #[arg(long, env = "GITOPS_TRIGGER_PATH", value_name = "PATH", default_value = "/trigger", value_parser = parse_path)]
    pub trigger_path: String,

    /// Start at most one pass per this long; valid requests in between are coalesced into one more pass at its end
    #[arg(long, env = "GITOPS_TRIGGER_MIN_INTERVAL", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub trigger_min_interval: Duration,

    /// Addresses allowed to post, as CIDRs separated by spaces or commas (10.0.0.0/8, 2001:db8::/32) [default: any]
    #[arg(long, env = "GITOPS_TRIGGER_ALLOW", value_name = "CIDRS", value_parser = parse_cidrs)]
    pub trigger_allow: Option<Cidrs>,

    /// Where the trigger keeps its pulse file, the delivery ids seen and its counters [default: $STATE_DIRECTORY, else /var/lib/gitops-trigger]
    #[arg(long, env = "GITOPS_TRIGGER_STATE_DIR", value_name = "DIR")]
    pub trigger_state_dir: Option<PathBuf>,

    /// Run PROGRAM (no arguments, nothing of the request) to start a pass, instead of writing the pulse file gitops-trigger.path watches
    #[arg(long, env = "GITOPS_TRIGGER_COMMAND", value_name = "PROGRAM")]
    pub trigger_command: Option<PathBuf>,

    /// Exit after this long without a request; socket activation starts the trigger again on the next one
    #[arg(long, env = "GITOPS_TRIGGER_IDLE_EXIT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub trigger_idle_exit: Duration,

    /// The branch the passes follow: a push to another branch starts nothing [default: every push starts a pass]
    #[arg(long, env = "GITOPS_BRANCH", value_name = "NAME")]
    pub branch: Option<String>,
}

/// Where status and the metrics find the trigger's counters.
#[derive(clap::Args, Debug, Clone)]
pub struct StatsDir {
    /// The trigger's state directory, whose counters status and the metrics show (gitops-trigger.service's StateDirectory=)
    #[arg(
        long = "trigger-state-dir",
        env = "GITOPS_TRIGGER_STATE_DIR",
        value_name = "DIR",
        default_value = DEFAULT_STATE_DIR
    )]
    pub trigger_state_dir: PathBuf,
}

impl Args {
    pub fn state_dir(&self) -> PathBuf {
        self.trigger_state_dir
            .clone()
            .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }
}

/// An absolute URL path of plain characters: it is compared byte for byte with the request's.
pub fn parse_path(text: &str) -> Result<String, String> {
    let ok = text.starts_with('/')
        && text.len() <= 256
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a URL path: write one starting with / of letters, digits and - . _ ~ (like /trigger)"
        ))
    }
}

/// One allowed network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack [::] socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.addr.is_ipv4() == ip.is_ipv4()
            && network_of(Cidr {
                addr: ip,
                prefix: self.prefix,
            }) == network_of(*self)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The networks allowed to post, as given (systemd's `IPAddressAllow=` takes the same text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidrs(pub Vec<Cidr>);

impl Cidrs {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

impl std::fmt::Display for Cidrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self.0.iter().map(Cidr::to_string).collect();
        f.write_str(&words.join(" "))
    }
}

/// The first address of the network.
fn network_of(cidr: Cidr) -> IpAddr {
    let prefix = u32::from(cidr.prefix);
    match cidr.addr {
        IpAddr::V4(v4) => {
            IpAddr::V4((u32::from(v4) & u32::MAX.checked_shl(32 - prefix).unwrap_or(0)).into())
        }
        IpAddr::V6(v6) => {
            IpAddr::V6((u128::from(v6) & u128::MAX.checked_shl(128 - prefix).unwrap_or(0)).into())
        }
    }
}

/// `10.0.0.0/8 192.0.2.7, 2001:db8::/32`: a bare address is a single host. Host bits set under
/// the prefix are refused: `10.1.2.3/8` is more likely a typo than a wish for all of 10/8.
pub fn parse_cidrs(text: &str) -> Result<Cidrs, String> {
    let mut all = Vec::new();
    for word in text.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
        let (addr, prefix) = match word.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (word, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{word:?} is not an address or a CIDR: write it like 192.0.2.0/24 or 2001:db8::/32"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{word:?} has a prefix length outside 0–{max}"))?,
        };
        let cidr = Cidr { addr, prefix };
        if network_of(cidr) != addr {
            return Err(format!(
                "{word:?} has bits set after its /{prefix} prefix: write the network's first address"
            ));
        }
        all.push(cidr);
    }
    if all.is_empty() {
        return Err(
            "no address given: list CIDRs like 192.0.2.0/24, or leave the option out to allow any"
                .into(),
        );
    }
    Ok(Cidrs(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match_as_a_table() {
        let table: [(&str, &str, bool); 9] = [
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "10.0.0.1", false),
        ];
        for (cidrs, ip, want) in table {
            let parsed = parse_cidrs(cidrs).unwrap();
            assert_eq!(parsed.allows(ip.parse().unwrap()), want, "{cidrs} {ip}");
        }
    }

    #[test]
    fn bad_cidrs_are_refused_with_the_fix() {
        for bad in [
            "",
            " , ",
            "10.0.0.0/33",
            "10.1.2.3/8",
            "host.example",
            "::1/129",
            "1.2.3.4/x",
        ] {
            let e = parse_cidrs(bad).unwrap_err();
            assert!(
                e.contains("write") || e.contains("prefix") || e.contains("leave"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse_cidrs("10.0.0.0/8, 2001:db8::/32 192.0.2.1")
                .unwrap()
                .to_string(),
            "10.0.0.0/8 2001:db8::/32 192.0.2.1/32"
        );
    }

    #[test]
    fn paths_are_plain_and_absolute() {
        assert!(parse_path("/trigger").is_ok());
        assert!(parse_path("/hooks/gitops-1.x_y~").is_ok());
        for bad in ["trigger", "/a b", "/a?b", "/%2e", ""] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
