//! The soak: passes of the real binary, one after another, against a Git server that hangs up,
//! stalls past the fetch timeout, truncates packs and is force-pushed, with commits pushed in
//! between and gitops killed with SIGKILL at random moments (in the fetch, while it writes a
//! tree, while the entry point runs). After every pass every invariant is checked; a broken one
//! fails the test with the seed and the pass that broke it.
//!
//! `GITOPS_SOAK_PASSES=N` runs longer; `GITOPS_SOAK_SEED=S` replays a run (the schedule of
//! commits, faults and kills is the seed's; where in a pass a kill lands still depends on
//! timing), `GITOPS_SOAK_SEED=random` draws a new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{names, Machine};
use crate::support::{git, output, run, Fault, FlakyProxy, GitDaemon, Upstream};

/// Passes in the default run: 42 to 54 s alone on this 2-core machine in a debug build, 45 to 70 s
/// beside the rest of the suite: under the 2 minutes the suite can give it.
const DEFAULT_PASSES: usize = 150;
/// The default schedule: fixed, so that CI runs the same one every time.
const DEFAULT_SEED: u64 = 0x5eed_0018_0005;
/// After this many passes, and at the end: the server behaves, and a normal pass must converge.
const CHECKPOINT_EVERY: usize = 50;

/// Packs in the store. Every fetch that brings objects adds one, and a pass whose fetch worked
/// consolidates them past 8 (src/git/pack.rs `MAX_PACKS`); only passes killed between their
/// fetch and that point add a pack that stays, so 8 more is a bound a schedule would need eight
/// such kills in a row to reach.
const MAX_PACKS: usize = 16;
/// Bytes under the state directory (store, trees, the spare, logs): the repository is about
/// 0.5 MB checked out, and the consolidated store well under 1 MB.
const MAX_STATE_BYTES: u64 = 8 << 20;
/// Entries in `trees/`: the applied tree, the one tried (failed or killed), and the one a
/// killed write left half done (swept by the next pass that writes a tree).
const MAX_TREES: usize = 4;

/// The fetch timeout of a pass the server stalls: short, so that the stall costs little time.
/// Other passes get `FETCH_TIMEOUT`, so that a loaded machine never turns a clean pass into a
/// timeout.
const STALLED_FETCH_TIMEOUT: &str = "1s";
const FETCH_TIMEOUT: &str = "20s";
/// How long a stalled connection stays silent: past the stalled pass's fetch timeout.
const STALL: Duration = Duration::from_secs(3);
/// A pass that runs longer than this hangs: the test fails.
const PASS_LIMIT: Duration = Duration::from_secs(60);

/// The entry point of every commit. It says when it starts (with gitops's pid, its parent)
/// and when it ran to the end, and finds out by itself, with a lock of its own rather than
/// gitops's, whether another copy of it is running. Each commit's `pause` makes it last, so
/// kills land inside it; a commit with a `fail` file exits 1.
const RUN_SH: &str = r#"#!/bin/sh
set -e
# A descriptor gitops did not pass on (it passes its lock on one of the low ones).
for fd in 9 8 7 6 5; do [ -e "/proc/$$/fd/$fd" ] || break; done
eval "exec $fd>>\"\$OUT/entry.lock\""
if ! flock -n "$fd"; then
    echo "overlap $GITOPS_COMMIT $$ $PPID" >> "$OUT/overlaps"
    flock "$fd"
fi
echo "start $GITOPS_COMMIT ${GITOPS_PREVIOUS_COMMIT:--} $$ $PPID" >> "$OUT/journal"
echo "soak: applying $GITOPS_COMMIT"
sleep "$(cat pause)"
if [ -e fail ]; then
    echo "fail $GITOPS_COMMIT $$" >> "$OUT/journal"
    exit 1
fi
echo "soak: done"
echo "end $GITOPS_COMMIT $$" >> "$OUT/journal"
mkdir -p "$OUT/done"
: > "$OUT/done/$GITOPS_COMMIT"
"#;

/// Files of the first commit; later ones change a few, add or remove one.
const FILES: usize = 300;
const PAUSES: [&str; 5] = ["0", "0.02", "0.05", "0.1", "0.2"];

/// splitmix64: the whole schedule comes from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// In [0, 1).
    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillAt {
    /// Once the server got the pass's connection.
    Fetch,
    /// Once a tree is being written (`trees/.new-*` is there).
    TreeWrite,
    /// Once this pass's entry point said it started.
    EntryPoint,
    /// At a moment drawn from the pass's first 250 ms.
    Anytime,
}

/// Who a kill hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Victims {
    /// gitops alone (`kill -9 PID`): its entry point lives on, holding the pass lock.
    Gitops,
    /// gitops and every process group it started, as stopping its systemd unit does.
    Everything,
}

#[derive(Debug, Clone, Copy)]
struct Kill {
    at: KillAt,
    victims: Victims,
    /// Fraction of the phase's span to wait once it is reached.
    delay: f64,
}

/// What gitops's decision should be for the pass, from the tip and the applied commit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    UpToDate,
    /// The tip is applied; `good`: its entry point exits 0.
    Apply {
        good: bool,
    },
    Refuse,
}

impl Expect {
    fn code(self) -> i32 {
        match self {
            Expect::UpToDate | Expect::Apply { good: true } => 0,
            Expect::Apply { good: false } => 1,
            Expect::Refuse => 4,
        }
    }
}

/// How a pass ended.
#[derive(Debug)]
enum Ended {
    Exited(i32),
    Killed(KillAt, Victims),
}

/// What a pass started from, to judge what it left.
struct Before {
    /// state.json's applied commit.
    applied: Option<String>,
    /// The commit the tip must descend from: state.json's, or the store's record when that is
    /// newer (a pass killed between the two writes).
    floor: Option<String>,
    link: Option<String>,
    tip: String,
    allow_rewind: bool,
    expect: Expect,
    journal_lines: usize,
}

#[derive(Default)]
struct Stats {
    passes: usize,
    exits: BTreeMap<i32, usize>,
    scheduled: BTreeMap<&'static str, usize>,
    fired: BTreeMap<&'static str, usize>,
    kills: BTreeMap<String, usize>,
    /// Kills drawn for a phase the pass never reached (no tree to write, no entry point; a
    /// fault failed the fetch), or that it had left by the kill's moment.
    kills_missed: BTreeMap<String, usize>,
    commits: usize,
    force_pushes: usize,
    pushed_back: usize,
    operator_rewinds: usize,
    max_packs: usize,
    max_bytes: u64,
}

struct Soak {
    seed: u64,
    passes: usize,
    rng: Rng,
    up: Upstream,
    proxy: FlakyProxy,
    // Serves the upstream behind the proxy for as long as the soak runs.
    _daemon: GitDaemon,
    url: String,
    m: Machine,
    /// The first-parent history of `main` as pushed, oldest first.
    history: Vec<String>,
    /// `history` before the last force-push, for pushing it back.
    before_rewind: Option<Vec<String>>,
    /// Commits whose entry point exits 1.
    failing: BTreeSet<String>,
    /// How long each commit's entry point pauses, in ms.
    pauses: BTreeMap<String, f64>,
    /// Files `files/…` created so far (some since removed).
    next_file: usize,
    serial: usize,
    /// `--depth` for every pass, when the store is to be shallow.
    depth: Option<&'static str>,
    pass: usize,
    /// The running (or last) pass's gitops.
    gitops_pid: u32,
    last_stderr: String,
    stats: Stats,
}

#[test]
fn soak_passes_against_a_misbehaving_server_keep_every_invariant() {
    soak(DEFAULT_SEED, DEFAULT_PASSES, None);
}

/// The same faults against a shallow store (`--depth 1`): its boundary, the whole history
/// fetched when a force-push hides the applied commit, and consolidation up to the boundary.
/// Shorter, with a seed of its own: the schedule is the long soak's, the store is not.
#[test]
fn soak_of_a_shallow_store_keeps_every_invariant() {
    soak(DEFAULT_SEED ^ 0xd3e7, DEFAULT_PASSES / 3, Some("1"));
}

fn soak(default_seed: u64, default_passes: usize, depth: Option<&'static str>) {
    let passes = match std::env::var("GITOPS_SOAK_PASSES") {
        Ok(n) => n
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("GITOPS_SOAK_PASSES={n:?} is not a number of passes")),
        Err(_) => default_passes,
    };
    let seed = match std::env::var("GITOPS_SOAK_SEED") {
        Ok(s) if s.trim() == "random" => Rng(Instant::now().elapsed().as_nanos() as u64
            ^ std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default())
        .next(),
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            };
            parsed.unwrap_or_else(|| panic!("GITOPS_SOAK_SEED={s:?} is not a number (or random)"))
        }
        Err(_) => default_seed,
    };
    eprintln!("soak: seed {seed:#x}, {passes} passes, depth {depth:?}");
    let started = Instant::now();
    let mut soak = Soak::new(seed, passes);
    soak.depth = depth;
    for pass in 1..=passes {
        soak.pass = pass;
        soak.one_pass();
        if pass % CHECKPOINT_EVERY == 0 && pass != passes {
            soak.converge();
        }
    }
    soak.pass = passes + 1;
    soak.converge();
    eprintln!(
        "soak: seed {seed:#x}: {} in {:.1}s",
        soak.summary(),
        started.elapsed().as_secs_f64()
    );
}

impl Soak {
    fn new(seed: u64, passes: usize) -> Soak {
        let up = Upstream::new();
        // Commits force-pushed away stay readable: the tree check reads any commit ever linked.
        for (key, value) in [("gc.auto", "0"), ("receive.autogc", "false")] {
            run(git(&up.home())
                .arg("--git-dir")
                .arg(up.bare())
                .args(["config", key, value]));
        }
        let mut files: Vec<(String, String)> = (0..FILES)
            .map(|i| {
                (
                    file_path(i),
                    format!("file {i}, first version\n").repeat(1 + i % 40),
                )
            })
            .collect();
        files.push(("run.sh".into(), RUN_SH.into()));
        files.push(("pause".into(), "0".into()));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let first = up.commit(&files, "the soak's first commit");
        let daemon = GitDaemon::serve(&up.srv());
        let proxy = FlakyProxy::new(daemon.port());
        let url = proxy.url("config.git");
        Soak {
            seed,
            passes,
            rng: Rng(seed),
            up,
            proxy,
            _daemon: daemon,
            url,
            m: Machine::new(),
            history: vec![first],
            before_rewind: None,
            failing: BTreeSet::new(),
            pauses: BTreeMap::new(),
            next_file: FILES,
            serial: 0,
            depth: None,
            pass: 0,
            gitops_pid: 0,
            last_stderr: String::new(),
            stats: Stats {
                commits: 1,
                ..Stats::default()
            },
        }
    }

    /// Fail the test, saying how to replay it.
    #[track_caller]
    fn broke(&self, what: &str) -> ! {
        let tail: Vec<&str> = self.last_stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "soak seed {:#x}, pass {} of {}: {what}\n\
             replay: GITOPS_SOAK_SEED={:#x} GITOPS_SOAK_PASSES={} cargo test soak_\n\
             so far: {}\n\
             --- the pass's stderr (last lines) ---\n{}",
            self.seed,
            self.pass,
            self.passes,
            self.seed,
            self.passes,
            self.summary(),
            tail.join("\n")
        );
    }

    fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "{} passes (exit codes {:?}); {} commits, {} force-pushes, {} pushed back, {} --allow-rewind passes; \
             faults scheduled {:?}, took effect {:?}; kills {:?}, drawn but missed {:?}; \
             at most {} packs and {} KiB in the state directory",
            s.passes,
            s.exits,
            s.commits,
            s.force_pushes,
            s.pushed_back,
            s.operator_rewinds,
            s.scheduled,
            s.fired,
            s.kills,
            s.kills_missed,
            s.max_packs,
            s.max_bytes / 1024
        )
    }

    fn one_pass(&mut self) {
        // Every pass draws the same numbers in the same order, whatever happens: the upstream's
        // history is the seed's alone.
        let push = self.rng.below(100);
        let force_push = self.rng.below(100);
        let force_depth = 1 + self.rng.below(3) as usize;
        let force_new = self.rng.chance(50);
        let push_back = self.rng.below(100);
        let operator = self.rng.below(100);
        let fault = self.rng.below(100);
        let fault_where = self.rng.fraction();
        let kill = self.rng.below(100);
        let kill_delay = self.rng.fraction();
        let kill_all = self.rng.chance(50);

        // The upstream moves.
        if let (Some(old), true) = (&self.before_rewind, push_back < 20) {
            // The force-push is undone: the old history pushed back.
            let old = old.clone();
            self.up.rewind(old.last().expect("a history"));
            self.history = old;
            self.before_rewind = None;
            self.stats.pushed_back += 1;
        } else if force_push < 6 && self.before_rewind.is_none() && self.history.len() > 1 {
            let depth = force_depth.min(self.history.len() - 1);
            let target = self.history[self.history.len() - 1 - depth].clone();
            self.before_rewind = Some(self.history.clone());
            self.up.rewind(&target);
            self.history.truncate(self.history.len() - depth);
            self.stats.force_pushes += 1;
            if force_new {
                self.commit(false);
            }
        }
        match push {
            0..=39 => self.commit(false),
            40..=49 => {
                self.commit(false);
                self.commit(false);
            }
            _ => {}
        }

        let fault = match fault {
            0..=7 => Fault::DropInHandshake { after: 0 },
            8..=15 => Fault::DropInHandshake {
                after: 1 + (fault_where * 400.0) as usize,
            },
            16..=25 => Fault::DropInPack { keep: fault_where },
            26..=35 => Fault::TruncatePack { keep: fault_where },
            36..=39 => Fault::StallInHandshake {
                after: (fault_where * 300.0) as usize,
                hold: STALL,
            },
            40..=43 => Fault::StallInPack {
                keep: fault_where,
                hold: STALL,
            },
            _ => Fault::None,
        };
        let victims = if kill_all {
            Victims::Everything
        } else {
            Victims::Gitops
        };
        // The entry point runs in fewer passes than the fetch (only those that apply and
        // fetched whole), so more of those kills are drawn.
        let kill = match kill {
            0..=5 => Some(KillAt::Fetch),
            6..=12 => Some(KillAt::TreeWrite),
            13..=25 => Some(KillAt::EntryPoint),
            26..=30 => Some(KillAt::Anytime),
            _ => None,
        }
        .map(|at| Kill {
            at,
            victims,
            delay: kill_delay,
        });

        // The operator's answer to a refused rewind: one pass with --allow-rewind.
        let allow_rewind = operator < 30 && self.would_refuse();
        self.run_pass(fault, kill, allow_rewind);
    }

    /// The server behaves, the tip's entry point succeeds, a rewind is taken with one
    /// --allow-rewind pass as an operator would: then a pass applies the tip and exits 0, and
    /// the next one is up to date.
    fn converge(&mut self) {
        self.proxy.next_connection(Fault::None);
        self.commit(true);
        let allow_rewind = self.would_refuse();
        if allow_rewind {
            self.stats.operator_rewinds += 1;
        }
        let tip = self.tip();
        let code = self.run_pass(Fault::None, None, allow_rewind);
        if code != 0 {
            self.broke(&format!(
                "with the server behaving, the pass exited {code}, not 0"
            ));
        }
        if self.applied().as_deref() != Some(tip.as_str()) {
            self.broke("with the server behaving, the pass did not apply the remote tip");
        }
        let code = self.run_pass(Fault::None, None, false);
        if code != 0 || !self.last_stderr.contains("up to date") {
            self.broke(&format!(
                "the pass after the converging one exited {code}, not 0 and up to date"
            ));
        }
    }

    /// One pass with `fault` on its first connection and maybe a kill; checks everything.
    /// Returns the exit code (-9 when killed).
    fn run_pass(&mut self, fault: Fault, kill: Option<Kill>, allow_rewind: bool) -> i32 {
        self.stats.passes += 1;
        if allow_rewind {
            self.stats.operator_rewinds += 1;
        }
        if fault != Fault::None {
            *self.stats.scheduled.entry(fault.kind()).or_default() += 1;
        }
        let fired_before = self.proxy.fired().len();
        let before = self.before(allow_rewind);
        // A pass that will not write a tree or run its entry point cannot be killed there: it
        // is killed in its fetch instead, so that the kills drawn for those land in them.
        let kill = kill.map(|kill| match (kill.at, before.expect) {
            (KillAt::EntryPoint | KillAt::TreeWrite, Expect::Apply { .. })
            | (KillAt::Fetch | KillAt::Anytime, _) => kill,
            (KillAt::EntryPoint | KillAt::TreeWrite, _) => Kill {
                at: KillAt::Fetch,
                ..kill
            },
        });
        self.proxy.next_connection(fault);
        let stalled = matches!(
            fault,
            Fault::StallInHandshake { .. } | Fault::StallInPack { .. }
        );
        let timeout = if stalled {
            STALLED_FETCH_TIMEOUT
        } else {
            FETCH_TIMEOUT
        };
        let mut cmd = self.m.command();
        cmd.args(["sync", "--repo-url", &self.url])
            .args(["--fetch-timeout", timeout])
            .args(["--lock-timeout", "30s", "--apply-timeout", "30s"]);
        if allow_rewind {
            cmd.arg("--allow-rewind");
        }
        if let Some(depth) = self.depth {
            cmd.args(["--depth", depth]);
        }
        let stdout = self.m.dir.path().join("pass.stdout");
        let stderr = self.m.dir.path().join("pass.stderr");
        cmd.stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        // Its own process group: "everything" is gitops's group and its entry point's.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let connections = self.proxy.connections();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| self.broke(&format!("cannot start gitops: {e}")));
        self.gitops_pid = child.id();
        let ended = self.wait_or_kill(child, kill, connections, &before.tip);
        self.last_stderr = std::fs::read_to_string(&stderr).unwrap_or_default();
        self.proxy.next_connection(Fault::None);
        for fired in &self.proxy.fired()[fired_before..] {
            *self.stats.fired.entry(fired.kind()).or_default() += 1;
        }
        let code = match ended {
            Ended::Exited(code) => {
                *self.stats.exits.entry(code).or_default() += 1;
                self.check_finished(&before, code, fault != Fault::None);
                // Bytes the server sent were withheld from the pass's only connection: nothing
                // it fetched can be whole, so it must not have gone on as if it were.
                let fired = self.proxy.fired().len() > fired_before;
                let only = self.proxy.connections() == connections + 1;
                if fired && only && code != 3 {
                    self.broke(&format!(
                        "exit {code} although its only connection was cut short ({fault:?}): expected 3"
                    ));
                }
                code
            }
            Ended::Killed(at, victims) => {
                *self
                    .stats
                    .kills
                    .entry(format!("{at:?}/{victims:?}"))
                    .or_default() += 1;
                -9
            }
        };
        self.check_always(&before);
        code
    }

    fn wait_or_kill(
        &mut self,
        mut child: Child,
        kill: Option<Kill>,
        connections: usize,
        tip: &str,
    ) -> Ended {
        let started = Instant::now();
        let pid = child.id();
        let mut reached: Option<Instant> = None;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                if let Some(kill) = kill {
                    *self
                        .stats
                        .kills_missed
                        .entry(format!("{:?}", kill.at))
                        .or_default() += 1;
                }
                return Ended::Exited(status.code().unwrap_or(-1));
            }
            if started.elapsed() > PASS_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                self.last_stderr = std::fs::read_to_string(self.m.dir.path().join("pass.stderr"))
                    .unwrap_or_default();
                self.broke(&format!(
                    "the pass still ran after {PASS_LIMIT:?}: it hangs"
                ));
            }
            if let Some(kill) = kill {
                if reached.is_none() && self.phase_reached(kill.at, pid, connections) {
                    reached = Some(Instant::now());
                }
                // Inside the phase, how far in is the draw's: up to 40 ms into a fetch, 5 ms
                // into a tree write, the tip's pause into an entry point (so that the kill
                // lands before it ends), 250 ms into the pass (most last 100 to 300 ms).
                let span = match kill.at {
                    KillAt::Fetch => 40.0,
                    KillAt::TreeWrite => 5.0,
                    KillAt::EntryPoint => self.pauses.get(tip).copied().unwrap_or(0.0),
                    KillAt::Anytime => 250.0,
                };
                let due = reached.is_some_and(|at| {
                    at.elapsed() >= Duration::from_micros((kill.delay * span * 1000.0) as u64)
                });
                if due {
                    if child.try_wait().unwrap().is_some() {
                        continue;
                    }
                    kill_pass(pid, kill.victims);
                    let _ = child.wait();
                    return Ended::Killed(kill.at, kill.victims);
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn phase_reached(&self, at: KillAt, pid: u32, connections: usize) -> bool {
        match at {
            KillAt::Fetch => self.proxy.connections() > connections,
            KillAt::TreeWrite => names(&self.m.state.join("trees"))
                .iter()
                .any(|n| n.starts_with(".new-")),
            KillAt::EntryPoint => self.starts_by(pid).next().is_some(),
            KillAt::Anytime => true,
        }
    }

    /// The journal's start lines of entry points whose parent was `pid`:
    /// (commit, previous commit, entry point pid).
    fn starts_by(&self, pid: u32) -> impl Iterator<Item = (String, String, u32)> {
        let journal = std::fs::read_to_string(self.m.out.join("journal")).unwrap_or_default();
        let pid = pid.to_string();
        journal
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                (f.len() == 5 && f[0] == "start" && f[4] == pid).then(|| {
                    (
                        f[1].to_string(),
                        f[2].to_string(),
                        f[3].parse().unwrap_or(0),
                    )
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn before(&mut self, allow_rewind: bool) -> Before {
        let state = self.state();
        let applied = state
            .as_ref()
            .and_then(|s| s["applied"]["commit"].as_str().map(str::to_string));
        let floor = self.floor(applied.clone());
        let tip = self.tip();
        let expect = match &floor {
            Some(a) if *a == tip && applied.as_deref() == Some(a.as_str()) => Expect::UpToDate,
            Some(a) if !allow_rewind && *a != tip && !self.is_ancestor(a, &tip) => Expect::Refuse,
            _ => Expect::Apply {
                good: !self.failing.contains(&tip),
            },
        };
        Before {
            applied,
            floor,
            link: self.linked_commit(),
            tip,
            allow_rewind,
            expect,
            journal_lines: self.journal().len(),
        }
    }

    /// The commit a pass must not go back from: state.json's, or the store's record when a
    /// pass was killed after writing the one and before the other.
    fn floor(&self, applied: Option<String>) -> Option<String> {
        let store = self.m.state.join("repo.git");
        let record = std::fs::read_to_string(store.join("refs/gitops/applied"))
            .ok()
            .or_else(|| {
                let packed = std::fs::read_to_string(store.join("packed-refs")).ok()?;
                packed
                    .lines()
                    .find(|l| l.ends_with(" refs/gitops/applied"))
                    .map(|l| l[..40.min(l.len())].to_string())
            })
            .map(|r| r.trim().to_string())
            .filter(|r| r.len() == 40);
        match (applied, record) {
            (Some(a), Some(r)) if a != r && self.is_ancestor(&a, &r) => Some(r),
            (None, Some(r)) => Some(r),
            (a, _) => a,
        }
    }

    fn would_refuse(&self) -> bool {
        let applied = self
            .state()
            .and_then(|s| s["applied"]["commit"].as_str().map(str::to_string));
        let tip = self.tip();
        match self.floor(applied) {
            Some(a) => a != tip && !self.is_ancestor(&a, &tip),
            None => false,
        }
    }

    /// What a pass that ran to its end must have done.
    fn check_finished(&self, before: &Before, code: i32, faulty: bool) {
        if self.last_stderr.contains("panicked") {
            self.broke("gitops panicked");
        }
        let expected = before.expect.code();
        let allowed = if faulty {
            vec![expected, 3]
        } else {
            vec![expected]
        };
        if !allowed.contains(&code) {
            self.broke(&format!(
                "exit {code}, expected {} ({:?}: tip {}, applied {:?}{})",
                allowed
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                before.expect,
                short(&before.tip),
                before.floor.as_deref().map(short),
                if faulty { ", a faulty server" } else { "" },
            ));
        }
        let Some(state) = self.state() else {
            self.broke("no state.json after a pass that ran to its end");
        };
        let applied = state["applied"]["commit"].as_str().map(str::to_string);
        let outcome = state["last_pass"]["outcome"].as_str().unwrap_or_default();
        let outcomes: &[&str] = match code {
            0 => &["applied", "up-to-date"],
            1 => &["apply-failed"],
            3 => &["fetch-failed"],
            4 => &["refused"],
            _ => &[],
        };
        if !outcomes.contains(&outcome) {
            self.broke(&format!(
                "exit {code} recorded as outcome {outcome:?} in state.json"
            ));
        }
        if !state["in_progress"].is_null() {
            self.broke("state.json still records a pass in progress after the pass ended");
        }
        let ran_tip = code == 0 && before.expect != Expect::UpToDate || code == 1;
        let expected_applied = if code == 0 {
            Some(before.tip.clone())
        } else {
            before.applied.clone()
        };
        if applied != expected_applied {
            self.broke(&format!(
                "exit {code}: applied is {:?}, expected {:?}",
                applied.as_deref().map(short),
                expected_applied.as_deref().map(short)
            ));
        }
        if code == 1 && state["pending"]["commit"].as_str() != Some(before.tip.as_str()) {
            self.broke("exit 1 without the tip pending");
        }
        // The entry point ran once for the tip, with the applied commit as the previous one,
        // or not at all.
        let starts: Vec<_> = self
            .journal()
            .into_iter()
            .skip(before.journal_lines)
            .filter(|l| l.starts_with("start "))
            .collect();
        let ours: Vec<&String> = starts
            .iter()
            .filter(|l| !self.started_by_an_orphan(l))
            .collect();
        let previous = before.applied.clone().unwrap_or_else(|| "-".into());
        let want = if ran_tip {
            vec![format!("start {} {previous}", before.tip)]
        } else {
            vec![]
        };
        let got: Vec<String> = ours
            .iter()
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect();
        if got != want {
            self.broke(&format!(
                "exit {code}: the entry point runs of this pass were {got:?}, expected {want:?}"
            ));
        }
    }

    /// A start line written by an entry point whose gitops was already killed (its parent is
    /// no gitops of a finished pass): it belongs to the pass before.
    fn started_by_an_orphan(&self, line: &str) -> bool {
        line.split(' ').nth(4) != Some(self.gitops_pid.to_string().as_str())
    }

    /// What must hold after every pass, however it ended.
    fn check_always(&mut self, before: &Before) {
        let state = self.state();
        let applied = state
            .as_ref()
            .and_then(|s| s["applied"]["commit"].as_str().map(str::to_string));
        // `applied` moves only to the tip, forward (or with --allow-rewind), and only to a
        // commit whose entry point ran to its end.
        if applied != before.applied {
            let Some(now) = &applied else {
                self.broke("applied was lost");
            };
            if *now != before.tip {
                self.broke(&format!(
                    "applied moved to {}, which is not the tip {}",
                    short(now),
                    short(&before.tip)
                ));
            }
            let forward = match &before.floor {
                None => true,
                Some(a) => self.is_ancestor(a, now),
            };
            if !forward && !before.allow_rewind {
                self.broke(&format!(
                    "applied went from {} to {}, which does not descend from it, without --allow-rewind",
                    before.floor.as_deref().map(short).unwrap_or_default(),
                    short(now)
                ));
            }
        }
        if let Some(applied) = &applied {
            if !self.m.out.join("done").join(applied).exists() {
                self.broke(&format!(
                    "applied is {}, but its entry point never ran to its end",
                    short(applied)
                ));
            }
        }
        let overlaps = std::fs::read_to_string(self.m.out.join("overlaps")).unwrap_or_default();
        if !overlaps.is_empty() {
            self.broke(&format!("two entry points ran at once:\n{overlaps}"));
        }

        // The link resolves to the complete tree of one commit, a commit this pass could have
        // linked.
        match std::fs::read_link(&self.m.checkout) {
            Err(_) if applied.is_none() => {}
            Err(e) => self.broke(&format!(
                "no checkout link, with {} applied: {e}",
                short(applied.as_deref().unwrap_or_default())
            )),
            Ok(target) => {
                let Some(commit) = self.linked_commit() else {
                    self.broke(&format!(
                        "the checkout link points at {}, not at a tree under {}",
                        target.display(),
                        self.m.state.join("trees").display()
                    ));
                };
                let pending = state
                    .as_ref()
                    .and_then(|s| s["pending"]["commit"].as_str().map(str::to_string));
                let in_progress = state
                    .as_ref()
                    .and_then(|s| s["in_progress"]["commit"].as_str().map(str::to_string));
                let could = [
                    applied.as_deref(),
                    pending.as_deref(),
                    in_progress.as_deref(),
                    Some(before.tip.as_str()),
                    before.link.as_deref(),
                ];
                if !could.contains(&Some(commit.as_str())) {
                    self.broke(&format!(
                        "the checkout link points at {}, which is neither applied, pending, in progress, the tip, nor what it pointed at",
                        short(&commit)
                    ));
                }
                if let Err(diff) = self.tree_matches(&target, &commit) {
                    self.broke(&format!(
                        "the checkout link's tree {} is not the tree of {}: {diff}",
                        target.display(),
                        short(&commit)
                    ));
                }
            }
        }

        // The state directory stays bounded.
        let packs = names(&self.m.state.join("repo.git/objects/pack"))
            .iter()
            .filter(|n| n.ends_with(".pack"))
            .count();
        let bytes = du(&self.m.state);
        let trees = names(&self.m.state.join("trees")).len();
        self.stats.max_packs = self.stats.max_packs.max(packs);
        self.stats.max_bytes = self.stats.max_bytes.max(bytes);
        if packs > MAX_PACKS {
            self.broke(&format!(
                "{packs} packs in the store, more than {MAX_PACKS}"
            ));
        }
        if bytes > MAX_STATE_BYTES {
            self.broke(&format!(
                "{bytes} bytes in the state directory, more than {MAX_STATE_BYTES}"
            ));
        }
        if trees > MAX_TREES {
            self.broke(&format!(
                "{trees} entries in trees/, more than {MAX_TREES}: {:?}",
                names(&self.m.state.join("trees"))
            ));
        }
    }

    /// Whether the directory holds exactly the commit's tree: the same paths, contents and
    /// executable bits, nothing more (compared by git itself, through a scratch index).
    fn tree_matches(&self, dir: &Path, commit: &str) -> Result<(), String> {
        let index = self.m.dir.path().join("soak.index");
        let _ = std::fs::remove_file(&index);
        let git_in = |args: &[&str]| {
            let mut cmd = git(&self.up.home());
            cmd.env("GIT_INDEX_FILE", &index)
                .arg("--git-dir")
                .arg(self.up.bare())
                .arg("--work-tree")
                .arg(dir)
                .args(args);
            output(&mut cmd)
        };
        let read = git_in(&["read-tree", commit]);
        if !read.status.success() {
            return Err(format!(
                "git read-tree: {}",
                String::from_utf8_lossy(&read.stderr)
            ));
        }
        // Refreshing compares contents where the stat data (none, after read-tree) differs.
        let _ = git_in(&["update-index", "-q", "--refresh"]);
        let mut diff = String::new();
        for args in [
            &["diff-files", "--name-status"][..],
            &["ls-files", "-o"][..],
        ] {
            let out = git_in(args);
            if !out.status.success() {
                return Err(format!(
                    "git {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            diff.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        if diff.is_empty() {
            Ok(())
        } else {
            let lines: Vec<&str> = diff.lines().take(10).collect();
            Err(format!("differs in {}", lines.join(", ")))
        }
    }

    /// A new commit on `main`, pushed: a few files changed, sometimes one added or removed,
    /// a pause for the entry point, and (unless `good`) one time in ten an entry point that
    /// fails.
    fn commit(&mut self, good: bool) {
        self.serial += 1;
        let serial = self.serial;
        let mut files: Vec<(String, String)> = Vec::new();
        let changes = if self.rng.chance(5) {
            40
        } else {
            1 + self.rng.below(4) as usize
        };
        for _ in 0..changes {
            let i = self.rng.below(self.next_file as u64) as usize;
            let lines = 1 + self.rng.below(60) as usize;
            files.push((
                file_path(i),
                format!("file {i}, commit {serial}\n").repeat(lines),
            ));
        }
        if self.rng.chance(15) {
            files.push((file_path(self.next_file), format!("new in {serial}\n")));
            self.next_file += 1;
        }
        if self.rng.chance(10) {
            let gone = file_path(self.rng.below(self.next_file as u64) as usize);
            if !files.iter().any(|(p, _)| *p == gone) {
                run(self
                    .up
                    .git_work()
                    .args(["rm", "-q", "--ignore-unmatch", "--"])
                    .arg(&gone));
            }
        }
        let pause = PAUSES[self.rng.below(PAUSES.len() as u64) as usize];
        files.push(("pause".into(), pause.into()));
        let fails = self.rng.chance(10) && !good;
        if fails {
            files.push(("fail".into(), "this commit's entry point exits 1\n".into()));
        } else {
            run(self
                .up
                .git_work()
                .args(["rm", "-q", "--ignore-unmatch", "--", "fail"]));
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let sha = self.up.commit(&files, &format!("soak commit {serial}"));
        if fails {
            self.failing.insert(sha.clone());
        }
        self.pauses
            .insert(sha.clone(), pause.parse::<f64>().unwrap_or(0.0) * 1000.0);
        self.history.push(sha);
        self.stats.commits += 1;
    }

    fn tip(&self) -> String {
        self.history.last().expect("a history").clone()
    }

    fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        output(
            git(&self.up.home())
                .arg("--git-dir")
                .arg(self.up.bare())
                .args(["merge-base", "--is-ancestor", ancestor, of]),
        )
        .status
        .success()
    }

    fn state(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.m.state.join("state.json")).ok()?;
        match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(e) => self.broke(&format!("state.json is not JSON ({e}): {text}")),
        }
    }

    fn applied(&self) -> Option<String> {
        self.state()
            .and_then(|s| s["applied"]["commit"].as_str().map(str::to_string))
    }

    /// The commit whose tree the checkout link points at, if it points at one in `trees/`.
    fn linked_commit(&self) -> Option<String> {
        let target = std::fs::read_link(&self.m.checkout).ok()?;
        let name = target.file_name()?.to_str()?.to_string();
        let in_trees = target.parent() == Some(self.m.state.join("trees").as_path());
        (in_trees && name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(name)
    }

    fn journal(&self) -> Vec<String> {
        std::fs::read_to_string(self.m.out.join("journal"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// SIGKILL to gitops, and with `Everything` to every process group it started (its entry
/// point's), found before gitops dies and its children are re-parented.
fn kill_pass(pid: u32, victims: Victims) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    let groups: Vec<i32> = match victims {
        Victims::Gitops => Vec::new(),
        Victims::Everything => children_groups(pid),
    };
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    if victims == Victims::Everything {
        // gitops's own group (its git helpers, if any), then its entry point's.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        for group in groups {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
}

/// The process groups of `pid`'s children, from /proc.
fn children_groups(pid: u32) -> Vec<i32> {
    let mut groups = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1).and_then(|f| f.parse::<u32>().ok());
        let pgrp = fields.get(2).and_then(|f| f.parse::<i32>().ok());
        if let (Some(ppid), Some(pgrp)) = (ppid, pgrp) {
            if ppid == pid && pgrp != pid as i32 && pgrp > 1 {
                groups.push(pgrp);
            }
        }
    }
    groups
}

fn file_path(i: usize) -> String {
    format!("files/d{}/f{i}.txt", i % 10)
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// Bytes of the regular files under `dir` (links not followed).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}
