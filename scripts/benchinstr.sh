#!/usr/bin/env bash
# benchinstr.sh — instructions per request of the hit-path benchmarks,
# counted by valgrind's callgrind: unlike ns/op, the count is the same
# from run to run whatever else the machine is doing, so small changes to
# the hit path show on a shared, noisy machine.
#
#   scripts/benchinstr.sh            # every hit benchmark beside its baseline
#   scripts/benchinstr.sh core 'BenchmarkNetHTTP$/memory-hit'
#   scripts/benchinstr.sh bench/gincache 'BenchmarkGinCache/gin-cache-hit'
#
# PKGDIR is a package directory under the repository, in the main module
# or a nested one (bench/gincache, the comparison with chenyahui/gin-cache,
# has its own go.mod): the test binary is built inside that directory.
#
# Each benchmark runs twice under callgrind (N1 and N2 iterations, set by
# the environment variables of the same name); the difference of the two
# totals divided by N2-N1 is the cost of one request, with the set-up
# (cache creation, the first fill) cancelled out. That is done REPEAT
# times (default 3) and the median printed. Work of background
# goroutines the requests cause is included. Needs valgrind (apt-get
# install valgrind); the Redis pairs (hit vs raw MGET and GET, near vs
# memory hit) need ROUTECACHE_TEST_REDIS (make servers-up;
# . .testenv/env; make bench-instr starts its own).
set -euo pipefail

N1=${N1:-20000}
N2=${N2:-60000}
REPEAT=${REPEAT:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/benchinstr.XXXXXX")
trap 'rm -rf "$work"' EXIT

command -v valgrind >/dev/null 2>&1 || {
    echo "benchinstr: valgrind is missing (apt-get install valgrind)" >&2
    exit 1
}

# binary PKG: the path of PKG's test binary (built once per run).
binary() { echo "$work/${1//\//_}.test"; }

# total PKG BENCH N: instructions of one run of BENCH with -benchtime Nx.
total() {
    local pkg=$1 bench=$2 n=$3 out="$work/cg.out"
    # Async preemption signals confuse callgrind; cgo is not needed. The
    # collector is off: whether a GC cycle falls between the two runs'
    # ends is luck, and moved a count by ~700 instructions. (A hit
    # allocates nothing of its own; the GC work per request is the
    # baseline's, for the allocations of the framework.) cpu.rdtscp=off:
    # the runtime's cputicks uses RDTSCP when CPUID offers it, and this
    # valgrind's CPU offers it but cannot decode it (SIGILL).
    (cd "$root/$pkg" && GOGC=off GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind \
        --callgrind-out-file="$out" "$(binary "$pkg")" \
        -test.run '^$' -test.bench "$bench" -test.benchtime "${n}x" -test.cpu 1 \
        >/dev/null 2>"$work/valgrind.log") || {
        cat "$work/valgrind.log" >&2
        return 1
    }
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

# perop PKG BENCH: instructions per iteration, the median of REPEAT
# measurements (the scheduler's idle spinning while a request waits on
# a server varies a little by run). Built in the package's own
# directory, so that a nested module's go.mod (bench/gincache) is the
# one used.
perop() {
    local pkg=$1 bench=$2 t1 t2 i all=() bin
    bin=$(binary "$pkg")
    [[ -x "$bin" ]] ||
        (cd "$root/$pkg" && CGO_ENABLED=0 go test -c -o "$bin" .)
    for ((i = 0; i < REPEAT; i++)); do
        t1=$(total "$pkg" "$bench" "$N1")
        t2=$(total "$pkg" "$bench" "$N2")
        all+=($(((t2 - t1) / (N2 - N1))))
    done
    printf '%s\n' "${all[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

# measured PKG BENCH: perop, measured once per run of this script (a
# baseline shared by several pairs is counted once). Sets $count.
declare -A seen=()
measured() {
    local k="$1 $2"
    [[ -n "${seen[$k]:-}" ]] || seen[$k]=$(perop "$1" "$2")
    count=${seen[$k]}
}

if (($# == 2)); then
    printf '%s %s: %s instructions/op\n' "$1" "$2" "$(perop "$1" "$2")"
    exit 0
fi

pair() { # pair PKG CACHED BASE LABEL
    local c b count
    measured "$1" "$2"
    c=$count
    measured "$1" "$3"
    b=$count
    printf '%-36s %9d %9d %+9d %6.2fx\n' "$4" "$c" "$b" $((c - b)) "$(awk -v c="$c" -v b="$b" 'BEGIN{print c/b}')"
}

printf '%-36s %9s %9s %9s %7s\n' "path (instructions/op)" cached base added ratio
pair ginadapter 'BenchmarkGin/memory-hit' 'BenchmarkGin/uncached' "Gin memory hit"
pair echoadapter 'BenchmarkEcho/memory-hit' 'BenchmarkEcho/uncached' "Echo v4 memory hit"
pair echo5adapter 'BenchmarkEcho5/memory-hit' 'BenchmarkEcho5/uncached' "Echo v5 memory hit"
pair core 'BenchmarkNetHTTP$/memory-hit' 'BenchmarkNetHTTP$/uncached' "net/http memory hit"
# The peer, chenyahui/gin-cache v1.10.0 (memory store, CacheByRequestURI),
# and routecache on the same Gin route in one binary (bench/gincache).
pair bench/gincache 'BenchmarkGinCache$/gin-cache-hit' 'BenchmarkGinCache$/uncached' "gin-cache (peer) Gin hit"
pair bench/gincache 'BenchmarkGinCache$/routecache-hit' 'BenchmarkGinCache$/uncached' "routecache Gin hit (same binary)"
pair bench/gincache 'BenchmarkGinCache$/routecache-hit' 'BenchmarkGinCache$/gin-cache-hit' "routecache vs gin-cache hit"
# A miss records and stores; its requests are built before the timer, the
# same for both, so the added column is the miss's own cost.
pair core 'BenchmarkMiss/memory-miss' 'BenchmarkMiss/uncached' "memory miss vs uncached"
pair core 'BenchmarkRuntimeTags/memory-hit-1$' 'BenchmarkRuntimeTags/memory-hit-0$' "hit with 1 runtime tag vs none"
pair core 'BenchmarkRuntimeTags/memory-hit-8$' 'BenchmarkRuntimeTags/memory-hit-0$' "hit with 8 runtime tags vs none"
if [[ -n "${ROUTECACHE_TEST_REDIS:-}" ]]; then
    # Client side only: the Redis server's work is another process's.
    pair core 'BenchmarkRedis/redis-hit' 'BenchmarkRedis/raw-mget' "Redis hit vs raw MGET of its keys"
    pair core 'BenchmarkRedis/redis-hit' 'BenchmarkRedis/raw-get' "Redis hit vs raw GET of the entry"
    pair core 'BenchmarkRedis/near-hit$' 'BenchmarkRedis/memory-hit' "near hit vs memory hit"
    pair core 'BenchmarkRedis/near-hit-filled-elsewhere' 'BenchmarkRedis/memory-hit' "near hit, entry stored elsewhere"
else
    echo "(Redis pairs skipped: ROUTECACHE_TEST_REDIS is not set; make bench-instr starts a Redis)"
fi
