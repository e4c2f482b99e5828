//! `Upstream`: a bare "config repository" plus a working clone that pushes to it, driven by the git CLI.

use super::{git, run};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// A real upstream repository at `<tmp>/srv/config.git` (branch `main`), changed only through
/// `<tmp>/work` so every change arrives the way a real `git push` delivers it.
pub struct Upstream {
    dir: TempDir,
}

impl Upstream {
    /// A bare repository with `HEAD` → `main` and no commits yet; the first `commit` creates `main`.
    pub fn new() -> Upstream {
        let dir = TempDir::new().expect("create tempdir");
        let up = Upstream { dir };
        fs::create_dir_all(up.home()).expect("create fake HOME");
        fs::create_dir_all(up.srv()).expect("create srv dir");
        run(up
            .git_in(&up.srv())
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(up.bare()));
        run(up
            .git_in(up.dir.path())
            .args(["init", "-q", "-b", "main"])
            .arg(up.work()));
        run(up
            .git_in(&up.work())
            .args(["remote", "add", "origin"])
            .arg(up.bare()));
        up
    }

    /// A bare repository with no commits at all. Same state as [`Upstream::new`]; the name
    /// says what a test relies on.
    pub fn empty() -> Upstream {
        Upstream::new()
    }

    /// Write `files` (relative path, content), commit everything and push to `main`.
    /// Files ending in `.sh` get mode 0755, others 0644. Returns the new commit's sha.
    /// An empty `files` still makes a (tree-identical) commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let mode = if path.ends_with(".sh") { 0o755 } else { 0o644 };
            self.write(path, content, mode);
        }
        self.commit_all(message)
    }

    /// Like [`Upstream::commit`] for one file with an explicit mode (e.g. a non-executable `run.sh`).
    pub fn commit_file_mode(&self, path: &str, content: &str, mode: u32, message: &str) -> String {
        self.write(path, content, mode);
        self.commit_all(message)
    }

    /// Commit `path` as a symlink to `target` (which need not exist), and push.
    pub fn commit_symlink(&self, path: &str, target: &str, message: &str) -> String {
        let full = self.work().join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir for {path}: {e}"));
        }
        let _ = fs::remove_file(&full);
        std::os::unix::fs::symlink(target, &full).unwrap_or_else(|e| panic!("ln -s {path}: {e}"));
        self.commit_all(message)
    }

    /// Delete `path`, commit and push. Returns the new commit's sha.
    pub fn remove(&self, path: &str, message: &str) -> String {
        fs::remove_file(self.work().join(path)).unwrap_or_else(|e| panic!("remove {path}: {e}"));
        self.commit_all(message)
    }

    /// Reset `main` to `sha` and force-push, as an upstream rollback or history rewrite would.
    pub fn rewind(&self, sha: &str) {
        run(self
            .git_in(&self.work())
            .args(["reset", "-q", "--hard", sha]));
        run(self.git_in(&self.work()).args([
            "push",
            "-q",
            "--force",
            "origin",
            "HEAD:refs/heads/main",
        ]));
    }

    /// Point (or create) `branch` in the bare repository at the working clone's `HEAD`.
    pub fn push_branch(&self, branch: &str) {
        run(self
            .git_in(&self.work())
            .args(["push", "-q", "--force", "origin"])
            .arg(format!("HEAD:refs/heads/{branch}")));
    }

    /// Make the bare repository's default branch (`HEAD`) `branch`.
    pub fn set_head(&self, branch: &str) {
        run(self
            .git_in(&self.bare())
            .args(["symbolic-ref", "HEAD"])
            .arg(format!("refs/heads/{branch}")));
    }

    /// The bare repository (`<tmp>/srv/config.git`).
    pub fn bare(&self) -> PathBuf {
        self.srv().join("config.git")
    }

    /// The directory holding the bare repository: the base path for git daemon / HTTP servers,
    /// under which the repository is `config.git`.
    pub fn srv(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// The `$HOME` given to every git command run here (empty, so no user config applies).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn git_in(&self, dir: &Path) -> Command {
        let mut cmd = git(&self.home());
        cmd.current_dir(dir);
        cmd
    }

    fn write(&self, path: &str, content: &str, mode: u32) {
        let full = self.work().join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir for {path}: {e}"));
        }
        fs::write(&full, content).unwrap_or_else(|e| panic!("write {path}: {e}"));
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {path}: {e}"));
    }

    /// Like [`Upstream::commit`], with `git -c` settings and environment for the commit itself:
    /// signing (`gpg.format=ssh`, `user.signingkey=…`, `commit.gpgsign=true`), a committer date.
    pub fn commit_with(
        &self,
        files: &[(&str, &str)],
        message: &str,
        config: &[String],
        env: &[(&str, &str)],
    ) -> String {
        for (path, content) in files {
            let mode = if path.ends_with(".sh") { 0o755 } else { 0o644 };
            self.write(path, content, mode);
        }
        let work = self.work();
        run(self.git_in(&work).args(["add", "-A"]));
        let mut commit = self.git_in(&work);
        for setting in config {
            commit.arg("-c").arg(setting);
        }
        commit.args([
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ]);
        commit.envs(env.iter().copied());
        run(&mut commit);
        self.push_main()
    }

    /// A git command in the working clone, for what the helpers above do not cover (branches,
    /// merges); push with [`Upstream::push_main`].
    pub fn git_work(&self) -> Command {
        self.git_in(&self.work())
    }

    /// Push the working clone's `HEAD` to `main` and return its sha.
    pub fn push_main(&self) -> String {
        run(self
            .git_in(&self.work())
            .args(["push", "-q", "origin", "HEAD:refs/heads/main"]));
        run(self.git_in(&self.work()).args(["rev-parse", "HEAD"]))
    }

    fn commit_all(&self, message: &str) -> String {
        self.commit_with(&[], message, &[], &[])
    }
}
