# shellcheck shell=bash disable=SC2034
# benches/lib.sh: what the benchmark scripts share. Sourced, never run:
#   BENCH_NAME=foo.sh; source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
#   bench_binary            sets $gitops: $GITOPS_BIN, or target/release/gitops built with cargo
#   bench_tmp PREFIX        sets $tmp (under $TMPDIR) and an EXIT trap that stops every server
#                           started here (bench_track PID) and removes $tmp
#   bench_isolate           no GITOPS_*/GIT_* from the caller, HOME=$tmp, no system git config,
#                           fixed author/committer, LC_ALL=C; writes $tmp/empty.env
#   bench_git_daemon BASE   git daemon on 127.0.0.1, a free port: sets DAEMON_PID, DAEMON_PORT
#   bench_http_backend BASE `git http-backend` behind a small python3 CGI server on 127.0.0.1,
#                           as tests/support/http.rs serves it: sets HTTP_PID, HTTP_PORT
#   bench_sshd DIR          an unprivileged-style sshd on 127.0.0.1 with throwaway host and user
#                           keys, as tests/support/sshd.rs runs it: sets SSHD_PID, SSHD_PORT,
#                           SSH_KEY, SSH_KNOWN_HOSTS, SSH_USER, SSH_GIT_COMMAND (a GIT_SSH_COMMAND
#                           using only that key and known_hosts)
#   bench_url TRANSPORT REPO_DIR   the URL of a repository under the server's base (after start)
#   bench_proc_cpu_ms PID   user+sys CPU of PID and of every child it has reaped (/proc/PID/stat
#                           utime+stime+cutime+cstime), in ms, 10 ms steps
#   bench_perf_ok           true when `perf stat -e task-clock` works here
#   bench_now_us            REPLY = wall clock in microseconds (no fork)
#   bench_run_timed NAME CMD...   runs CMD (output to $tmp/NAME.out, exit checked), sets
#                           WALL_MS and CPU_MS (perf task-clock when BENCH_PERF=1 and perf works,
#                           else bash's `times`, 1 ms steps) and RSS_KIB (GNU time %M when
#                           BENCH_RSS=1)
#   bench_stat median|mean|min|max SAMPLES...   one number
#   bench_ratio A B         A/B with 3 decimals ("inf" when B is 0)
#   bench_verdict TEXT VALUE LIMIT  prints "  PASS  TEXT" when VALUE <= LIMIT, else FAIL
#   bench_machine           prints the machine: date, nproc, kernel, CPU model, TMPDIR's filesystem

: "${BENCH_NAME:=bench}"

say() { printf '%s\n' "$*"; }
die() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bench_binary() {
    if [[ -n ${GITOPS_BIN:-} ]]; then
        gitops=$GITOPS_BIN
    else
        command -v cargo >/dev/null || die "cargo not found: install Rust, or set GITOPS_BIN=path/to/gitops"
        say "building the release binary (cargo build --release) ..." >&2
        (cd "$bench_root" && cargo build --release) >&2 || die "cargo build --release failed"
        gitops=$bench_root/target/release/gitops
    fi
    [[ -x $gitops ]] || die "$gitops is not an executable file (GITOPS_BIN?)"
    gitops=$(cd "$(dirname "$gitops")" && pwd)/$(basename "$gitops")
    command -v git >/dev/null || die "git not found"
    [[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"
}

bench_pids=()
bench_dirs=() # directories outside $tmp (e.g. on /dev/shm) to remove too
bench_track() { bench_pids+=("$1"); }
bench_cleanup() {
    local pid
    for pid in "${bench_dirs[@]}"; do rm -rf "$pid"; done
    for pid in "${bench_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${tmp:-} && -d $tmp ]]; then
        # A server's child may still be closing its files for a moment.
        rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; }
    fi
}
bench_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_isolate() {
    local var
    while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(GITOPS_|GIT_|REPO_URL$)' || true)
    export HOME=$tmp XDG_CONFIG_HOME=$tmp/.config GIT_CONFIG_NOSYSTEM=1 LC_ALL=C
    export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.invalid
    export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.invalid
    : >"$tmp/empty.env"
}

bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null || echo $((20000 + RANDOM % 40000))
}

# bench_wait_ls_remote URL PID: up to ~5 s for the server at URL to answer; 1 when PID died.
bench_wait_ls_remote() {
    local _
    for _ in $(seq 100); do
        git -c protocol.version=0 ls-remote "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

bench_first_repo() { # the name of the first *.git directory under $1, or nothing
    local repos=("$1"/*.git)
    [[ -d ${repos[0]} ]] && basename "${repos[0]}"
    return 0
}

# bench_git_daemon BASE [DAEMON OPTIONS...]; BASE must hold at least one repository.
bench_git_daemon() {
    local base=$1 try repo _
    shift
    repo=$(bench_first_repo "$base")
    [[ -n $repo ]] || die "bench_git_daemon: no *.git repository under $base"
    DAEMON_PORT=
    for _ in 1 2 3 4 5; do
        try=$(bench_free_port)
        "$(git --exec-path)/git-daemon" --reuseaddr --export-all --base-path="$base" --listen=127.0.0.1 \
            --port="$try" "$@" "$base" >"$tmp/daemon.log" 2>&1 &
        DAEMON_PID=$!
        if bench_wait_ls_remote "git://127.0.0.1:$try/$repo" "$DAEMON_PID"; then
            DAEMON_PORT=$try
            bench_track "$DAEMON_PID"
            return 0
        fi
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    done
    cat "$tmp/daemon.log" >&2
    die "git daemon did not come up on 127.0.0.1"
}

# The CGI server: one thread per connection, one request per connection, git http-backend run
# for each request with only the CGI variables it needs (GIT_PROTOCOL passed on, or the backend
# answers v0 whatever the client asked). Its own CPU (Python) is apart from the backend's: the
# backend runs as its child, so /proc/PID/stat's cutime/cstime is the backend's share.
bench_http_script() {
    cat <<'EOF'
import http.server, os, socketserver, subprocess, sys

base, home, portfile = sys.argv[1], sys.argv[2], sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # so that Expect: 100-continue is answered

    def do_GET(self):
        self.cgi()

    def do_POST(self):
        self.cgi()

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def cgi(self):
        path, _, query = self.path.partition("?")
        body = self.body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": base, "GIT_HTTP_EXPORT_ALL": "1", "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
            "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": self.client_address[0],
        }
        for header, var in (("Git-Protocol", "GIT_PROTOCOL"), ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        run = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = run.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if run.returncode != 0 and not head:
            status, payload = 500, run.stderr
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a fleet's burst must not overflow the listen backlog

server = Server(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
EOF
}

bench_http_backend() {
    local base=$1 repo _
    repo=$(bench_first_repo "$base")
    [[ -n $repo ]] || die "bench_http_backend: no *.git repository under $base"
    mkdir -p "$tmp/http-home"
    bench_http_script >"$tmp/http-backend.py"
    rm -f "$tmp/http.port"
    python3 "$tmp/http-backend.py" "$base" "$tmp/http-home" "$tmp/http.port" >"$tmp/http.log" 2>&1 &
    HTTP_PID=$!
    bench_track "$HTTP_PID"
    for _ in $(seq 100); do [[ -s $tmp/http.port ]] && break; sleep 0.05; done
    [[ -s $tmp/http.port ]] || { cat "$tmp/http.log" >&2; die "the http-backend server did not come up on 127.0.0.1"; }
    HTTP_PORT=$(cat "$tmp/http.port")
    bench_wait_ls_remote "http://127.0.0.1:$HTTP_PORT/$repo" "$HTTP_PID" ||
        { cat "$tmp/http.log" >&2; die "git ls-remote over http://127.0.0.1:$HTTP_PORT/$repo failed"; }
}

# bench_sshd DIR: keys, config and log in DIR (created). Logs in as the current user with the
# generated key only.
bench_sshd() {
    local dir=$1 try kind key _ attempt
    [[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing: install openssh-server (Debian: apt-get install openssh-server)"
    command -v ssh-keygen >/dev/null || die "ssh-keygen is missing: install openssh-client"
    mkdir -p "$dir"
    # sshd running as root refuses to start without its privilege-separation directory.
    [[ $(id -u) -ne 0 || -d /run/sshd ]] || { mkdir -p /run/sshd && chmod 755 /run/sshd; }
    for key in host_key client_key; do
        ssh-keygen -q -t ed25519 -N '' -C gitops-bench -f "$dir/$key"
    done
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    SSH_USER=$(id -un)
    SSHD_PORT=
    for attempt in 1 2 3 4 5; do
        try=$(bench_free_port)
        cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $try
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
PrintMotd no
AcceptEnv GIT_PROTOCOL
MaxStartups 1000
MaxSessions 1000
LogLevel ERROR
EOF
        /usr/sbin/sshd -D -e -f "$dir/sshd_config" </dev/null >/dev/null 2>"$dir/sshd-$attempt.log" &
        SSHD_PID=$!
        for _ in $(seq 100); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$try") 2>/dev/null; then
                SSHD_PORT=$try
                break 2
            fi
            kill -0 "$SSHD_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
    done
    [[ -n $SSHD_PORT ]] || { cat "$dir"/sshd-*.log >&2; die "sshd did not come up on 127.0.0.1"; }
    bench_track "$SSHD_PID"
    read -r kind key _ <"$dir/host_key.pub"
    printf '[127.0.0.1]:%s %s %s\n' "$SSHD_PORT" "$kind" "$key" >"$dir/known_hosts"
    SSH_KEY=$dir/client_key
    SSH_KNOWN_HOSTS=$dir/known_hosts
    SSH_GIT_COMMAND="ssh -F /dev/null -i $SSH_KEY -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null"
}

# bench_url TRANSPORT REPO_DIR (absolute path of a repository under the served base BASE_DIR)
bench_url() {
    case $1 in
        git) REPLY=git://127.0.0.1:$DAEMON_PORT/$(basename "$2") ;;
        http) REPLY=http://127.0.0.1:$HTTP_PORT/$(basename "$2") ;;
        ssh) REPLY=ssh://$SSH_USER@127.0.0.1:$SSHD_PORT$2 ;;
        *) die "unknown transport '$1' (git, http or ssh)" ;;
    esac
}

bench_clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
bench_proc_cpu_ms() {
    local stat rest
    stat=$(<"/proc/$1/stat") || return 1
    rest=${stat##*) } # the command name may hold spaces; fields restart after ") "
    # shellcheck disable=SC2086 # split on purpose
    set -- $rest
    # $1 is field 3 (state); utime..cstime are fields 14..17, i.e. $12..$15 here.
    REPLY=$(((${12} + ${13} + ${14} + ${15}) * 1000 / bench_clk_tck))
}

bench_perf_ok() { command -v perf >/dev/null 2>&1 && perf stat -x, -e task-clock -o /dev/null -- /bin/true >/dev/null 2>&1; }

bench_now_us() { local t=${EPOCHREALTIME/[.,]/}; REPLY=$((10#$t)); }

# bash's `times`, second line: user and system time of every reaped child, 1 ms steps.
bench_children_ms() {
    local user sys m sec
    { read -r _ && read -r user sys; } <"$1"
    REPLY=0
    for m in "$user" "$sys"; do
        m=${m%s}
        sec=${m#*m}
        REPLY=$((REPLY + 10#${m%%m*} * 60000 + 10#${sec/./}))
    done
}

bench_run_timed() {
    local name=$1 rc=0 t0 t1 c0
    shift
    local pre=()
    [[ ${BENCH_RSS:-0} == 1 ]] && pre=(/usr/bin/time -f '%M' -o "$tmp/$name.rss")
    if [[ ${BENCH_PERF:-0} == 1 ]] && bench_perf_ok_cached; then
        bench_now_us; t0=$REPLY
        "${pre[@]}" perf stat -x, -e task-clock -o "$tmp/$name.perf" -- "$@" >"$tmp/$name.out" 2>&1 || rc=$?
        bench_now_us; t1=$REPLY
        CPU_MS=$(awk -F, '$3 ~ /task-clock/ { printf "%.3f", $1 }' "$tmp/$name.perf")
    else
        times >"$tmp/times.0"
        bench_now_us; t0=$REPLY
        "${pre[@]}" "$@" >"$tmp/$name.out" 2>&1 || rc=$?
        bench_now_us; t1=$REPLY
        times >"$tmp/times.1"
        bench_children_ms "$tmp/times.0"; c0=$REPLY
        bench_children_ms "$tmp/times.1"
        CPU_MS=$((REPLY - c0))
    fi
    if ((rc != 0)); then
        tail -n 20 "$tmp/$name.out" >&2
        die "$name failed (exit $rc): $*"
    fi
    WALL_MS=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.3f", d / 1000 }')
    RSS_KIB=
    [[ ${BENCH_RSS:-0} == 1 ]] && RSS_KIB=$(tail -n 1 "$tmp/$name.rss")
    return 0
}
bench_perf_state=
bench_perf_ok_cached() {
    [[ -n $bench_perf_state ]] || { bench_perf_ok && bench_perf_state=1 || bench_perf_state=0; }
    [[ $bench_perf_state == 1 ]]
}

bench_stat() {
    local what=$1
    shift
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk -v what="$what" '
        { v[NR] = $1; sum += $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (what == "median") x = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            else if (what == "mean") x = sum / NR
            else if (what == "min") x = v[1]
            else x = v[NR]
            printf "%.3f\n", x
        }'
}
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "inf"}'; }
bench_verdict() {
    local ok
    ok=$(awk -v v="$2" -v l="$3" 'BEGIN {print (v != "inf" && v != "nan" && v + 0 <= l + 0) ? "PASS" : "FAIL"}')
    printf '  %-4s  %s\n' "$ok" "$1"
}

bench_machine() {
    local cpu fs
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
    fs=$(df -PT "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR == 2 { print $2 " (" $7 ")" }')
    say "  date         $(date -u '+%Y-%m-%d %H:%M UTC')"
    say "  machine      nproc $(nproc), kernel $(uname -r), CPU ${cpu:-unknown}"
    say "  TMPDIR       ${TMPDIR:-/tmp} on ${fs:-unknown}"
    say "  load         $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-minute load average at the start)"
    say "  git          $(git --version)"
}
