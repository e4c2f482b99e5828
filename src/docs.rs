//! The man pages and shell completions, generated from the clap definition so they can never
//! disagree with `--help` (packaging/build.sh runs the hidden `gitops generate-docs DIR`).

use std::path::Path;

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Write `man/man1/gitops.1`, one `man/man1/gitops-<subcommand>.1` per visible subcommand (a
/// tree MANPATH can point at), and the bash, zsh and fish completions under `dir/completions`.
pub fn generate(command: clap::Command, dir: &Path) -> Result<()> {
    // No `help` subcommand in the pages: it would be listed as gitops-help(1), a page nobody
    // writes (`gitops help X` still works in the real command line; `--help` says the same).
    let mut command = command.disable_help_subcommand(true);
    let man = dir.join("man/man1");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("could not create {}", d.display()))?;
    }
    command.build();
    let global: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    write_page(&command, "gitops", &man, true, &global)?;
    // Once built, a subcommand's display name is `gitops-sync` and its usage `gitops sync`.
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("gitops-{}", sub.get_name());
        write_page(sub, &name, &man, false, &global)?;
    }
    for (shell, file) in [
        (Shell::Bash, "gitops.bash"),
        (Shell::Zsh, "_gitops"),
        (Shell::Fish, "gitops.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "gitops", &mut out);
        let path = completions.join(file);
        std::fs::write(&path, out)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}

fn write_page(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    main: bool,
    global: &[clap::Arg],
) -> Result<()> {
    let page = clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .section("1")
        .source(concat!("gitops ", env!("CARGO_PKG_VERSION")))
        .manual("gitops manual");
    let mut out = Vec::new();
    let rendered = (|| {
        page.render_title(&mut out)?;
        page.render_name_section(&mut out)?;
        page.render_synopsis_section(&mut out)?;
        page.render_description_section(&mut out)?;
        page.render_options_section(&mut out)?;
        page.render_subcommands_section(&mut out)?;
        if name == "gitops-install-units" {
            install_units_environment().to_writer(&mut out)?;
        } else {
            environment(command, global).to_writer(&mut out)?;
        }
        if main {
            facts().to_writer(&mut out)?;
        }
        page.render_version_section(&mut out)
    })();
    rendered.context("could not render the man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("could not write {}", path.display()))
}

/// The variables a page's options read (the main page: every subcommand's), from clap's own
/// definition so that none is forgotten, and how they meet the env file and the flags.
fn environment(command: &clap::Command, global: &[clap::Arg]) -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{bold, italic, roman, Roff};
    fn collect(command: &clap::Command, into: &mut Vec<(String, String, String)>) {
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let entry = (env.to_string_lossy().into_owned(), long.to_string(), help);
                if !into.iter().any(|(e, _, _)| *e == entry.0) {
                    into.push(entry);
                }
            }
        }
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            collect(sub, into);
        }
    }
    let mut vars = Vec::new();
    let scope = clap::Command::new("scope").args(global.iter().cloned());
    collect(&scope, &mut vars);
    collect(command, &mut vars);
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([
        roman("Every option below can also be set by its variable, in the process environment or in the env file ("),
        bold("/etc/gitops/gitops.env"),
        roman(", or the file "),
        bold("--config"),
        roman(" names), KEY=VALUE lines read as systemd's EnvironmentFile= reads them. A flag beats the variable, and the process environment beats the env file. An empty value means unset."),
    ]);
    for (env, long, help) in vars {
        roff.control("TP", []).text([bold(env.as_str())]).text([
            roman("Same as "),
            bold(format!("--{long}")),
            roman(". "),
            roman(help),
        ]);
        if env == "GITOPS_REPO_URL" {
            roff.control("TP", []).text([bold("REPO_URL")]).text([
                roman("Read when "),
                italic("GITOPS_REPO_URL"),
                roman(" is not set."),
            ]);
        }
    }
    roff
}

/// install-units writes the settings it is given into the env file and reads none of them from
/// the environment (an image must not inherit the build machine's settings).
fn install_units_environment() -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{bold, roman, Roff};
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "install-units reads no env file and no GITOPS_* setting: the settings given as flags are what it writes into the env file, one GITOPS_* variable each (see gitops-sync(1)); with --trigger, the trigger's go into /etc/gitops/trigger.env (see gitops-trigger(1)).",
    )]);
    roff.control("TP", [])
        .text([bold("GITOPS_SYSTEMCTL")])
        .text([roman("Same as "), bold("--systemctl"), roman(".")]);
    roff
}

/// What `--help` cannot say: exit codes, files, where the rest is documented.
fn facts() -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{bold, roman, Roff};
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "up to date, or the new commit applied"),
        ("1", "the entry point failed (non-zero exit, missing, or timeout); for status: the last pass failed, or none ran recently"),
        ("2", "usage or configuration error (state left as it was)"),
        ("3", "fetch failed (network, authentication, missing repository or branch, timeout)"),
        ("4", "refused: the remote no longer descends from the applied commit"),
        ("5", "refused: the commit is not signed by a trusted key"),
        ("10", "gitops plan only: the next sync would run the entry point"),
        ("70", "internal error"),
        ("75", "another pass holds the lock"),
    ] {
        roff.control("TP", []).text([bold(code)]).text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (file, meaning) in [
        (
            "/etc/gitops/gitops.env",
            "the env file: KEY=VALUE lines, read as systemd's EnvironmentFile= reads them",
        ),
        (
            "/var/lib/gitops/",
            "the state directory: repo.git, trees/, spare/, logs/, state.json, lock",
        ),
        (
            "/gitops",
            "the checkout: a symlink to the tree of the commit being applied",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(file)])
            .text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), /usr/share/doc/gitops/README.md"),
    ]);
    roff
}
