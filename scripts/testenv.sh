#!/usr/bin/env bash
# testenv.sh — start / stop the throw-away cache servers used by the
# integration tests (`make test`, `.ci/run`).
#
#   scripts/testenv.sh up   DIR   check the prerequisites, start servers,
#                                 write DIR/env, DIR/pids
#   scripts/testenv.sh down DIR   stop everything listed in DIR/pids, remove DIR
#   scripts/testenv.sh check      only check the prerequisites: go (at least
#                                 go.mod's version), the server binaries or the
#                                 right to install them (root, or sudo without
#                                 a password prompt), free ports
#
# `up` starts, on free loopback ports chosen at run time (never 6379/11211,
# and never relying on any server that was already running):
#   * one standalone redis-server
#   * a 3-node Redis Cluster (3 masters, no replicas)
#   * two memcached servers
# and writes DIR/env with lines a shell can source:
#   export ROUTECACHE_TEST_REDIS=127.0.0.1:PORT
#   export ROUTECACHE_TEST_REDIS_CLUSTER=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#   export ROUTECACHE_TEST_MEMCACHE=127.0.0.1:M1,127.0.0.1:M2
#
# Every process is started in the background by this script, recorded in
# DIR/pids as "PID PORT PROGRAM", and stopped by that PID only: nothing is ever
# killed by name, and pre-existing servers (e.g. the system redis on 6379)
# are left alone.
#
# Missing redis-server / redis-cli / memcached binaries are installed from
# Debian's packages (apt-get), without letting the packages start their own
# system services.
set -euo pipefail

PROG=testenv
MARKER=.routecache-testenv   # marks a directory as ours, so `down` may rm -rf it

# Ports are drawn at random from this range. Redis Cluster nodes also need
# PORT+10000 (the cluster bus), i.e. 37000-38999, to be free.
PORT_MIN=27000
PORT_MAX=28999

START_TIMEOUT=10     # seconds to wait for one server to answer
CLUSTER_TIMEOUT=30   # seconds to wait for cluster_state:ok
STOP_TIMEOUT=5       # seconds between SIGTERM and SIGKILL in `down`

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $0 up DIR     check the prerequisites, start test servers; writes DIR/env and DIR/pids
       $0 down DIR   stop the servers recorded in DIR/pids and remove DIR
       $0 check      only check the prerequisites (go, server binaries or apt rights, ports)
EOF
    exit 2
}

# ---------------------------------------------------------------------------
# Installing the server binaries
# ---------------------------------------------------------------------------

have_binaries() {
    command -v redis-server >/dev/null 2>&1 &&
        command -v redis-cli >/dev/null 2>&1 &&
        command -v memcached >/dev/null 2>&1
}

ensure_binaries() {
    have_binaries && return 0

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "redis-server/redis-cli/memcached are missing, and we are neither root nor have sudo to install them (apt-get install redis-server memcached)"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "redis-server/redis-cli/memcached are missing and apt-get is not available; please install them"

    log "installing redis-server and memcached with apt-get"

    # Keep the packages' maintainer scripts from starting system services
    # (a system memcached on 11211, a second redis on 6379): Debian's
    # invoke-rc.d / deb-systemd-invoke obey /usr/sbin/policy-rc.d, and exit
    # code 101 means "action forbidden". We only add this file if there is
    # none, and remove it again afterwards.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        if printf '#!/bin/sh\n# temporary, from routecache scripts/testenv.sh\nexit 101\n' |
            "${sudo[@]}" tee "$policy" >/dev/null &&
            "${sudo[@]}" chmod 755 "$policy"; then
            added_policy=1
        fi
    fi

    local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends redis-server memcached)
    local ok=0
    # (apt's chatter goes to stderr: stdout of this script stays quiet)
    if "${install[@]}" >&2; then
        ok=1
    else
        # The package lists may be missing or stale: refresh once and retry.
        log "apt-get install failed; running apt-get update and retrying"
        if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
            "${install[@]}" >&2; then
            ok=1
        fi
    fi

    if ((added_policy)); then
        "${sudo[@]}" rm -f "$policy" || true
    fi

    ((ok)) || die "could not install redis-server and memcached with apt-get; install them by hand and retry"
    have_binaries || die "apt-get succeeded but redis-server/redis-cli/memcached are still not on PATH"
}

# ---------------------------------------------------------------------------
# Prerequisites (checked before anything starts; README.md, "Tests")
# ---------------------------------------------------------------------------

# check_go: the go command is on PATH and at least the version go.mod
# declares (the tests are built with it right after `up`).
check_go() {
    command -v go >/dev/null 2>&1 ||
        die "go is not on PATH: install the Go toolchain (go.mod's go line names the lowest version)"
    local gomod want have
    gomod="$(dirname "${BASH_SOURCE[0]}")/../go.mod"
    [[ -f $gomod ]] || return 0
    want=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$gomod" | head -n 1)
    have=$(go env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p')
    [[ -n $want && -n $have ]] || return 0
    if [[ $(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1) != "$want" ]]; then
        die "go $have is older than go $want, the version go.mod declares: install go $want or later"
    fi
}

# check_install_rights: when a server binary is missing, apt-get must be
# there and usable (as root, or through sudo without a password prompt).
check_install_rights() {
    have_binaries && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "redis-server, redis-cli or memcached is missing and apt-get is not available: install them (Debian: redis-server memcached) and retry"
    [[ $(id -u) -eq 0 ]] && return 0
    command -v sudo >/dev/null 2>&1 ||
        die "redis-server, redis-cli or memcached is missing, and installing them with apt-get needs root or sudo: run as root, or install them (apt-get install redis-server memcached)"
    sudo -n true 2>/dev/null ||
        die "redis-server, redis-cli or memcached is missing, and sudo asks for a password: run 'sudo apt-get install redis-server memcached' once, or run as root"
}

# check_ports: enough free ports in PORT_MIN..PORT_MAX for the six servers,
# three of them with their cluster bus port (PORT+10000) free as well.
# Uses ss when present; without it, pick_port probes each port itself.
check_ports() {
    command -v ss >/dev/null 2>&1 || return 0
    local busy free=0 with_bus=0 p
    busy=" $(ss -Hltn 2>/dev/null | awk '{n=split($4, a, ":"); print a[n]}' | tr '\n' ' ') "
    for ((p = PORT_MIN; p <= PORT_MAX; p++)); do
        [[ $busy == *" $p "* ]] && continue
        free=$((free + 1))
        [[ $busy == *" $((p + 10000)) "* ]] || with_bus=$((with_bus + 1))
    done
    ((free >= 6 && with_bus >= 3)) ||
        die "not enough free loopback ports: need 6 in $PORT_MIN-$PORT_MAX ($free free), 3 of them with PORT+10000 free in $((PORT_MIN + 10000))-$((PORT_MAX + 10000)) ($with_bus)"
}

check_prereqs() {
    check_go
    check_install_rights
    check_ports
}

# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------

CLAIMED=" "   # ports handed out during this run (space-separated)

# port_busy PORT: true if something listens on PORT (any address) or
# answers on 127.0.0.1:PORT.
port_busy() {
    local p=$1
    if command -v ss >/dev/null 2>&1 &&
        [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
        return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

# pick_port [bus]: sets PICKED to a free port from PORT_MIN..PORT_MAX that
# this run has not used yet. With "bus", PORT+10000 must be free too.
PICKED=
pick_port() {
    local want_bus=${1:-} p tries=0
    while ((tries++ < 500)); do
        p=$((PORT_MIN + RANDOM % (PORT_MAX - PORT_MIN + 1)))
        [[ $CLAIMED == *" $p "* ]] && continue
        port_busy "$p" && continue
        if [[ -n $want_bus ]]; then
            [[ $CLAIMED == *" $((p + 10000)) "* ]] && continue
            port_busy "$((p + 10000))" && continue
            CLAIMED+="$((p + 10000)) "
        fi
        CLAIMED+="$p "
        PICKED=$p
        return 0
    done
    die "no free port found in $PORT_MIN-$PORT_MAX"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# launch PORT CMD...: run CMD in the background (its output goes to
# $STATE/PROGRAM-PORT.log), record "PID PORT PROGRAM" in $STATE/pids and set
# LAUNCHED_PID.
LAUNCHED_PID=
launch() {
    local port=$1
    shift
    local name=$1
    "$@" >"$STATE/$name-$port.log" 2>&1 </dev/null &
    LAUNCHED_PID=$!
    echo "$LAUNCHED_PID $port $name" >>"$STATE/pids"
}

# alive PID: the process exists and is not a zombie.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }            # drop "pid (comm) ", leaving "STATE ..."
    [[ ${stat%% *} != Z ]]
}

# ours PID PORT PROGRAM: PID is still the server we started (guards
# against PID reuse): its command line names PROGRAM and PORT.
ours() {
    local cmd
    alive "$1" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$3"* ]] && grep -qw -- "$2" <<<"$cmd"
}

redis_ping() {
    [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

memcached_version() {
    # Send "version" over bash's /dev/tcp; expect "VERSION x.y.z".
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'version\r\n' >&3
        IFS= read -r -t 2 line <&3 || exit 1
        [[ $line == VERSION* ]]
    ) 2>/dev/null
}

# wait_ready PID PORT CHECK: wait until `CHECK PORT` succeeds. Fails early
# if the process exits (e.g. the port was taken in the meantime).
wait_ready() {
    local pid=$1 port=$2 check=$3 deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        "$check" "$port" && return 0
        alive "$pid" || return 1
        sleep 0.1
    done
    "$check" "$port"
}

# start_server KIND [bus]: start one server of KIND (redis, cluster-node,
# memcached) on a fresh port, retrying on another port if it does not come
# up. Sets STARTED_PORT.
STARTED_PORT=
start_server() {
    local kind=$1 want_bus=${2:-} attempt cmd check
    for attempt in 1 2 3 4 5; do
        pick_port "$want_bus"
        local port=$PICKED
        case $kind in
        redis)
            cmd=(redis-server --port "$port" --bind 127.0.0.1
                --save "" --appendonly no --daemonize no --dir "$STATE")
            check=redis_ping ;;
        cluster-node)
            cmd=(redis-server --port "$port" --bind 127.0.0.1
                --cluster-enabled yes
                --cluster-config-file "$STATE/nodes-$port.conf"
                --cluster-node-timeout 2000
                --save "" --appendonly no --daemonize no --dir "$STATE")
            check=redis_ping ;;
        memcached)
            cmd=(memcached -l 127.0.0.1 -p "$port" -U 0 -m 64)
            # memcached refuses to run as root unless told which user to be.
            [[ $(id -u) -eq 0 ]] && cmd+=(-u root)
            check=memcached_version ;;
        *) die "unknown server kind $kind" ;;
        esac

        launch "$port" "${cmd[@]}"
        local pid=$LAUNCHED_PID
        if wait_ready "$pid" "$port" "$check"; then
            log "$kind up on 127.0.0.1:$port (pid $pid)"
            STARTED_PORT=$port
            return 0
        fi

        log "$kind on port $port did not come up (attempt $attempt); its log:"
        tail -n 20 "$STATE/${cmd[0]}-$port.log" >&2 || true
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    die "could not start $kind"
}

# stop_all DIR: TERM every recorded server, wait up to STOP_TIMEOUT seconds,
# then KILL the ones still running.
stop_all() {
    local dir=$1 pid port name
    [[ -f $dir/pids ]] || return 0
    local -a live=()
    while read -r pid port name; do
        [[ $pid =~ ^[0-9]+$ ]] || continue
        if ours "$pid" "$port" "$name"; then
            kill -TERM "$pid" 2>/dev/null || true
            live+=("$pid")
        fi
    done <"$dir/pids"
    ((${#live[@]})) || return 0

    local deadline=$((SECONDS + STOP_TIMEOUT)) left
    while :; do
        left=()
        for pid in "${live[@]}"; do alive "$pid" && left+=("$pid"); done
        ((${#left[@]})) || break
        if ((SECONDS >= deadline)); then
            log "killing (SIGKILL) pids that ignored SIGTERM: ${left[*]}"
            kill -KILL "${left[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    log "stopped ${#live[@]} server(s)"
}

# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------

join_comma() {
    local IFS=,
    echo "$*"
}

cmd_up() {
    local dir=$1
    check_prereqs
    ensure_binaries

    mkdir -p "$dir"
    STATE=$(cd "$dir" && pwd)
    # Refuse a directory that holds other things, or servers already up.
    if [[ -s $STATE/pids ]]; then
        die "$STATE already has servers (see $STATE/pids); run '$0 down $dir' first"
    fi
    if [[ ! -e $STATE/$MARKER && -n $(ls -A "$STATE") ]]; then
        die "$STATE is not empty and was not made by $0; use a new or empty directory"
    fi
    touch "$STATE/$MARKER"
    : >"$STATE/pids"
    rm -f "$STATE/env"

    # If anything below fails, stop what we already started (the logs stay
    # in DIR for diagnosis; `down DIR` removes it).
    trap 'rc=$?; if ((rc != 0)); then log "up failed; stopping the servers started so far"; stop_all "$STATE"; fi' EXIT

    local t0=$SECONDS

    # Standalone redis.
    start_server redis
    local redis_port=$STARTED_PORT

    # Redis Cluster: three empty cluster-enabled nodes, then join them.
    local -a cluster_ports=() cluster_addrs=()
    local i
    for i in 1 2 3; do
        start_server cluster-node bus
        cluster_ports+=("$STARTED_PORT")
        cluster_addrs+=("127.0.0.1:$STARTED_PORT")
    done
    log "creating cluster ${cluster_addrs[*]}"
    if ! redis-cli --cluster create "${cluster_addrs[@]}" \
        --cluster-replicas 0 --cluster-yes >"$STATE/cluster-create.log" 2>&1; then
        cat "$STATE/cluster-create.log" >&2
        die "redis-cli --cluster create failed"
    fi
    # Wait until every node reports the cluster healthy (all slots served).
    local deadline=$((SECONDS + CLUSTER_TIMEOUT)) p ok
    while :; do
        ok=1
        for p in "${cluster_ports[@]}"; do
            redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null |
                tr -d '\r' | grep -qx 'cluster_state:ok' || { ok=0; break; }
        done
        ((ok)) && break
        ((SECONDS < deadline)) || die "cluster not ok after ${CLUSTER_TIMEOUT}s (node $p: $(redis-cli -p "$p" cluster info 2>&1 | tr -d '\r' | grep cluster_state || true))"
        sleep 0.2
    done
    log "cluster ok"

    # Two memcached servers.
    local -a mc_addrs=()
    for i in 1 2; do
        start_server memcached
        mc_addrs+=("127.0.0.1:$STARTED_PORT")
    done

    # The environment for the tests (written last: its presence means "up").
    cat >"$STATE/env.tmp" <<EOF
export ROUTECACHE_TEST_REDIS=127.0.0.1:$redis_port
export ROUTECACHE_TEST_REDIS_CLUSTER=$(join_comma "${cluster_addrs[@]}")
export ROUTECACHE_TEST_MEMCACHE=$(join_comma "${mc_addrs[@]}")
EOF
    mv "$STATE/env.tmp" "$STATE/env"

    log "all servers up in $((SECONDS - t0))s; environment in $STATE/env:"
    sed 's/^/  /' "$STATE/env" >&2
}

cmd_down() {
    local dir=$1
    if [[ ! -d $dir ]]; then
        log "$dir does not exist; nothing to stop"
        return 0
    fi
    local abs
    abs=$(cd "$dir" && pwd)
    [[ $abs != / && $abs != "${HOME:-/}" ]] || die "refusing to use $abs as a state directory"

    stop_all "$abs"

    if [[ -e $abs/$MARKER ]]; then
        rm -rf -- "$abs"
    else
        # Not made by `up`: remove only our own files, never anything else.
        log "$abs has no $MARKER marker; removing only pids/env"
        rm -f -- "$abs/pids" "$abs/env"
    fi
}

case ${1:-}/$# in
check/1) check_prereqs && log "prerequisites ok" ;;
up/2) cmd_up "$2" ;;
down/2) cmd_down "$2" ;;
*) usage ;;
esac
