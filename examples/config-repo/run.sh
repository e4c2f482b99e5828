#!/bin/sh
# Entry point of the example configuration repository. gitops runs it from the checkout with
# GITOPS_COMMIT, GITOPS_PREVIOUS_COMMIT, GITOPS_BRANCH, GITOPS_REPO_URL and GITOPS_CHECKOUT set.
# DEMO_ROOT lets examples/demo.sh aim it at a temporary directory instead of the real /.
set -eu
root="${DEMO_ROOT:-}"
mkdir -p "$root/etc"
# Write the new file next to the old one and rename it: a reader never sees half a motd.
cp motd "$root/etc/motd.gitops-new"
echo "Commit: ${GITOPS_COMMIT}" >> "$root/etc/motd.gitops-new"
mv "$root/etc/motd.gitops-new" "$root/etc/motd"
echo "installed $root/etc/motd for commit ${GITOPS_COMMIT}"
