#!/usr/bin/env bash
# benchcontention.sh — does a parallel cache hit wait on a lock? Runs the
# parallel hit benchmarks on 2 Ps with the mutex and block profiles on
# (every event: -test.mutexprofilefraction 1, -test.blockprofilerate 1)
# and prints each profile's top entries (go tool pprof -top), kept to the
# samples whose stack passes through the goroutines b.RunParallel starts
# (testing.(*B).RunParallel.func1): the timed requests' own waits, not the
# fill before the timer nor the testing framework's (the benchmark's own
# goroutine waits in RunParallel for the whole run).
# An empty table means no timed request waited on a mutex or blocked.
# The peer (chenyahui/gin-cache) is profiled the same way, for contrast.
#
#   scripts/benchcontention.sh            # BENCHTIME=1s TOP=10
set -euo pipefail

BENCHTIME=${BENCHTIME:-1s}
TOP=${TOP:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/benchcontention.XXXXXX")
trap 'rm -rf "$work"' EXIT

# profile PKGDIR BENCH LABEL: build PKGDIR's test binary in its own
# directory (bench/gincache is a nested module), run BENCH, print the tops.
profile() {
    local pkg=$1 bench=$2 label=$3 bin="$work/${1//\//_}.test" kind
    [[ -x "$bin" ]] || (cd "$root/$pkg" && go test -c -o "$bin" .)
    (cd "$root/$pkg" && "$bin" -test.run '^$' -test.bench "$bench" -test.cpu 2 \
        -test.benchtime "$BENCHTIME" -test.benchmem \
        -test.mutexprofile "$work/mutex.out" -test.blockprofile "$work/block.out") |
        grep '^Benchmark'
    for kind in mutex block; do
        echo "--- $label: $kind profile, timed requests' stacks (whole profile: $(go tool pprof -top -nodecount=1 "$bin" "$work/$kind.out" 2>/dev/null | grep -o 'of .* total' || echo 'empty'))"
        go tool pprof -top -nodecount="$TOP" -focus 'RunParallel\.func1' "$bin" "$work/$kind.out" 2>&1 |
            sed -n '/^Showing\|^ *flat\|^ *[0-9.]\+[a-zµ]*s\? \+[0-9.]\+%/p' | head -n $((TOP + 2))
    done
    echo
}

profile core 'BenchmarkNetHTTPParallel/memory-hit' 'net/http memory hit'
profile bench/gincache 'BenchmarkGinCacheParallel/routecache-hit' 'Gin routecache hit'
profile bench/gincache 'BenchmarkGinCacheParallel/gin-cache-hit' 'Gin gin-cache (peer) hit'
