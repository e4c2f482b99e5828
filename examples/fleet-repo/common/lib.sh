# Shared by every entry point of the example fleet: they source it. DEMO_ROOT lets
# examples/fleet-demo.sh aim them at a temporary directory instead of the real /.
set -eu
root="${DEMO_ROOT:-}"

# install_file SOURCE DEST: DEST replaced in one rename, so a reader never sees half a file.
install_file() {
    mkdir -p "$root$(dirname "$2")"
    cp "$1" "$root$2.gitops-new"
    mv "$root$2.gitops-new" "$root$2"
    echo "$GITOPS_HOST: installed $root$2"
}

# The motd every machine gets, with who it is and what it runs.
install_motd() {
    { cat common/motd; echo "Host: $GITOPS_HOST ($1), commit $GITOPS_COMMIT"; } > .motd.tmp
    install_file .motd.tmp /etc/motd
    rm -f .motd.tmp
}
