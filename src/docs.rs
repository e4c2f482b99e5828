//! The man pages and shell completions, generated from the clap definition so they can never
//! disagree with `--help` (packaging/build.sh runs the hidden `gitops generate-docs DIR`).

use std::path::Path;

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Write `man/man1/gitops.1`, one `man/man1/gitops-<subcommand>.1` per visible subcommand (a
/// tree MANPATH can point at), and the bash, zsh and fish completions under `dir/completions`.
pub fn generate(mut command: clap::Command, dir: &Path) -> Result<()> {
    let man = dir.join("man/man1");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("could not create {}", d.display()))?;
    }
    command.build();
    write_page(&command, "gitops", &man, true)?;
    // Once built, a subcommand's display name is `gitops-sync` and its usage `gitops sync`.
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("gitops-{}", sub.get_name());
        write_page(sub, &name, &man, false)?;
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

fn write_page(command: &clap::Command, name: &str, dir: &Path, main: bool) -> Result<()> {
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
        if main {
            facts().to_writer(&mut out)?;
        }
        page.render_version_section(&mut out)
    })();
    rendered.context("could not render the man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("could not write {}", path.display()))
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
            "the state directory: repo.git, trees/, logs/, state.json, lock",
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
