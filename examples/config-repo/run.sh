#!/bin/sh
# Entry point of the example configuration repository. gitops runs it from the checkout with
# GITOPS_COMMIT, GITOPS_PREVIOUS_COMMIT, GITOPS_BRANCH, GITOPS_REPO_URL and GITOPS_CHECKOUT set.
# DEMO_ROOT lets examples/demo.sh aim it at a temporary directory instead of the real /.
set -eu
root="${DEMO_ROOT:-}"
mkdir -p "$root/etc"
# Write the new file next to the old one and rename it: a reader never sees half a motd.
cat > "$root/etc/motd.gitops-new" <<MOTD
------------------------
Managed by gitops.
Host:   $(uname -n)
Commit: ${GITOPS_COMMIT}
------------------------
MOTD
mv "$root/etc/motd.gitops-new" "$root/etc/motd"
echo "wrote $root/etc/motd for commit ${GITOPS_COMMIT}"
