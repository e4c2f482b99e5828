//! What a newcomer meets first: the help, the man pages and completions the packages ship.

use crate::harness::Machine;

#[test]
fn gitops_alone_prints_the_help_not_one_long_line() {
    let m = Machine::new();
    let run = m.run(&[]).expect(2);
    assert!(run.stderr.contains("Usage: gitops"), "{}", run.stderr);
    assert!(run.stderr.contains("Commands:"), "{}", run.stderr);
    assert!(run.stderr.contains("  sync "), "{}", run.stderr);
    assert!(!run.stderr.contains("error:"), "{}", run.stderr);
    let longest = run.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 250, "a {longest}-character line:\n{}", run.stderr);
}

#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let m = Machine::new();
    let out = m.dir.path().join("docs");
    m.run(&["generate-docs", out.to_str().unwrap()]).expect(0);
    let man = out.join("man/man1");
    let main = std::fs::read_to_string(man.join("gitops.1")).unwrap();
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
    ] {
        assert!(main.contains(section), "gitops.1 lacks {section}");
    }
    for sub in ["sync", "plan", "status", "reboot-plan", "install-units"] {
        let page = std::fs::read_to_string(man.join(format!("gitops-{sub}.1")))
            .unwrap_or_else(|e| panic!("gitops-{sub}.1: {e}"));
        let name = format!("gitops\\-{}", sub.replace('-', "\\-"));
        assert!(page.contains(&name), "{page}");
        for file in ["gitops.bash", "_gitops", "gitops.fish"] {
            let text = std::fs::read_to_string(out.join("completions").join(file)).unwrap();
            assert!(text.contains(sub), "{file} does not complete {sub}");
        }
    }
    assert!(
        !man.join("gitops-generate-docs.1").exists(),
        "the hidden command has no page"
    );
    assert!(!man.join("gitops-help.1").exists());
}

/// The long options a subcommand's --help lists.
fn options_in_help(m: &Machine, sub: &str) -> Vec<String> {
    let help = m.run(&[sub, "--help"]).expect(0).stdout;
    let mut options: Vec<String> = help
        .lines()
        .filter(|l| l.starts_with("  ") && l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect();
    options.sort();
    options
}

#[test]
fn each_subcommand_lists_its_own_options_only() {
    let m = Machine::new();
    assert_eq!(
        options_in_help(&m, "reboot-plan"),
        [
            "--at",
            "--config",
            "--dry-run",
            "--fleet-lock-url",
            "--help",
            "--json",
            "--machine-id-file",
            "--reboot-command",
            "--reboot-file",
            "--reboot-min-uptime",
            "--reboot-require-clock-sync",
            "--state-dir",
            "--version"
        ]
    );
    assert_eq!(
        options_in_help(&m, "status"),
        [
            "--config",
            "--help",
            "--json",
            "--log",
            "--max-age",
            "--prometheus",
            "--state-dir",
            "--systemctl",
            "--trigger-state-dir",
            "--version"
        ]
    );
    // The process that reads the internet takes no option of a pass.
    assert_eq!(
        options_in_help(&m, "trigger"),
        [
            "--branch",
            "--config",
            "--help",
            "--trigger-allow",
            "--trigger-command",
            "--trigger-idle-exit",
            "--trigger-min-interval",
            "--trigger-path",
            "--trigger-secret-file",
            "--trigger-state-dir",
            "--version"
        ]
    );
    for sub in ["sync", "install-units"] {
        let options = options_in_help(&m, sub);
        for shared in ["--repo-url", "--state-dir", "--ssh-key", "--lock-timeout"] {
            assert!(options.iter().any(|o| o == shared), "{sub}: {options:?}");
        }
    }
    // A setting of the pass is no option of status: the env file's, not the command line's.
    let run = m.run(&["status", "--repo-url", "git://h/r"]).expect(2);
    assert!(run.error_line().contains("--repo-url"), "{}", run.stderr);
}

#[test]
fn status_ignores_a_bad_pass_setting_in_the_env_file() {
    let m = Machine::new();
    std::fs::write(&m.config, "GITOPS_APPLY_TIMEOUT=soon\n").unwrap();
    let run = m.run(&["status"]).expect(1);
    assert!(run.stdout.contains("no pass has run yet"), "{}", run.stdout);
}
