// Command benchratio reads `go test -bench -benchmem` output on stdin and
// prints each cached path against its uncached baseline from the same
// run: the extra nanoseconds and allocations per request, and the ratio.
// With -count > 1 it keeps each benchmark's fastest run, the figure least
// disturbed by other work on a shared machine. A second table sets
// routecache beside a peer library on the same route (bench/gincache:
// chenyahui/gin-cache), each against the same uncached baseline, and a
// third shows how the parallel benchmarks scale from -cpu 1 to -cpu 2.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./core ./ginadapter ./echoadapter ./echo5adapter | go run ./internal/benchratio
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

type result struct {
	ns     float64
	allocs float64
	bytes  float64
}

// line matches "BenchmarkGin/memory-hit-2   123  456.7 ns/op  0 B/op  0 allocs/op".
var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+([\d.]+) allocs/op)?`)

// name matches a benchmark's name at the start of a line whose figures
// did not follow it (a log line written during the run came between), and
// figures matches those figures on a later line of their own.
var (
	name    = regexp.MustCompile(`^(Benchmark\S+?)(?:-(\d+))?\s`)
	figures = regexp.MustCompile(`^\s*\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+([\d.]+) allocs/op)?`)
)

// parse reads benchmark output and keeps each benchmark's fastest run per
// GOMAXPROCS (the -N suffix; none is 1). A name whose figures come on a
// later line, after log output, is joined to them.
func parse(r io.Reader) map[string]map[string]result {
	best := map[string]map[string]result{} // name -> procs -> fastest
	var pending []string                   // [name, procs] awaiting figures
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		var bench, procs string
		var r result
		if m := line.FindStringSubmatch(text); m != nil {
			bench, procs = m[1], m[2]
			r = result{ns: num(m[3]), bytes: num(m[4]), allocs: num(m[5])}
			pending = nil
		} else if m := name.FindStringSubmatch(text); m != nil {
			pending = m[1:3]
			continue
		} else if m := figures.FindStringSubmatch(text); m != nil && pending != nil {
			bench, procs = pending[0], pending[1]
			r = result{ns: num(m[1]), bytes: num(m[2]), allocs: num(m[3])}
			pending = nil
		} else {
			continue
		}
		if procs == "" {
			procs = "1"
		}
		if best[bench] == nil {
			best[bench] = map[string]result{}
		}
		if old, ok := best[bench][procs]; !ok || r.ns < old.ns {
			best[bench][procs] = r
		}
	}
	return best
}

// pairs lists what is compared: cached path, baseline, goal.
var pairs = []struct {
	cached, base string
	goal         string
}{
	{"BenchmarkGin/memory-hit", "BenchmarkGin/uncached", "hit adds <= 100 ns and <= 2 allocs"},
	{"BenchmarkEcho/memory-hit", "BenchmarkEcho/uncached", "hit adds <= 100 ns and <= 2 allocs"},
	{"BenchmarkEcho5/memory-hit", "BenchmarkEcho5/uncached", "hit adds <= 100 ns and <= 2 allocs"},
	{"BenchmarkNetHTTP/memory-hit", "BenchmarkNetHTTP/uncached", "hit adds <= 100 ns and <= 2 allocs"},
	{"BenchmarkNetHTTPParallel/memory-hit", "BenchmarkNetHTTPParallel/uncached", "reported: b.RunParallel, -cpu 1 and 2"},
	{"BenchmarkMiss/memory-miss", "BenchmarkMiss/uncached", "reported (recording and storing)"},
	{"BenchmarkRedis/redis-hit", "BenchmarkRedis/raw-get", "ratio <= 1.10, one round trip"},
	{"BenchmarkRedis/redis-hit", "BenchmarkRedis/raw-mget", "reported: the hit's own keys in one raw MGET"},
	{"BenchmarkRedis/near-hit", "BenchmarkRedis/memory-hit", "ratio <= 1.10, no round trip"},
	{"BenchmarkRedis/near-hit-filled-elsewhere", "BenchmarkRedis/memory-hit", "ratio <= 1.10, on an entry another instance stored"},
	{"BenchmarkMemcache/memcache-hit", "BenchmarkMemcache/raw-getmulti", "ratio <= 1.10, one GetMulti"},
	{"BenchmarkMemcache/memcache-hit", "BenchmarkMemcache/raw-getmulti-all", "reported: the hit's own keys in one raw GetMulti"},
	{"BenchmarkMemcache/one-server/memcache-hit", "BenchmarkMemcache/one-server/raw-getmulti", "ratio <= 1.10 (one memcached server)"},
}

// trios lists peer comparisons: a peer's cached path, ours and the
// uncached baseline, all from one benchmark run.
var trios = []struct {
	peer, ours, base string
	label            string
}{
	{"BenchmarkGinCache/gin-cache-hit", "BenchmarkGinCache/routecache-hit", "BenchmarkGinCache/uncached", "Gin memory hit: chenyahui/gin-cache v1.10.0 vs routecache"},
	{"BenchmarkGinCacheParallel/gin-cache-hit", "BenchmarkGinCacheParallel/routecache-hit", "BenchmarkGinCacheParallel/uncached", "the same, b.RunParallel"},
}

// parallel lists the benchmarks whose speed-up from -cpu 1 to -cpu 2 is
// printed.
var parallel = []string{
	"BenchmarkNetHTTPParallel/uncached",
	"BenchmarkNetHTTPParallel/memory-hit",
	"BenchmarkGinCacheParallel/uncached",
	"BenchmarkGinCacheParallel/routecache-hit",
	"BenchmarkGinCacheParallel/gin-cache-hit",
}

func main() {
	best := parse(os.Stdin)
	fmt.Printf("%-46s %10s %10s %9s %7s %8s  %s\n", "cached path", "ns/op", "base ns", "+ns", "ratio", "+allocs", "goal")
	for _, p := range pairs {
		for _, procs := range []string{"1", "2"} {
			c, ok1 := best[p.cached][procs]
			b, ok2 := best[p.base][procs]
			if !ok1 || !ok2 {
				continue
			}
			name := p.cached + " / " + p.base[strings.LastIndex(p.base, "/")+1:]
			if procs != "1" {
				name += " -cpu " + procs
			}
			fmt.Printf("%-46s %10.1f %10.1f %+9.1f %7.2f %+8.0f  %s\n", strings.TrimPrefix(name, "Benchmark"), c.ns, b.ns, c.ns-b.ns, c.ns/b.ns, c.allocs-b.allocs, p.goal)
		}
	}
	printTrios(best)
	// Parallel scaling: how much faster each path runs on 2 cores than 1.
	header := false
	for _, name := range parallel {
		one, ok1 := best[name]["1"]
		two, ok2 := best[name]["2"]
		if !ok1 || !ok2 {
			continue
		}
		if !header {
			fmt.Printf("\n%-40s %10s %10s %9s\n", "parallel path", "-cpu 1 ns", "-cpu 2 ns", "speed-up")
			header = true
		}
		fmt.Printf("%-40s %10.1f %10.1f %8.2fx\n", strings.TrimPrefix(name, "Benchmark"), one.ns, two.ns, one.ns/two.ns)
	}
}

// printTrios prints each peer comparison found in the input: the uncached
// baseline, the peer's hit and ours, what each adds to the baseline, and
// ours over the peer's (below 1: ours is faster).
func printTrios(best map[string]map[string]result) {
	header := false
	for _, t := range trios {
		for _, procs := range []string{"1", "2"} {
			p, ok1 := best[t.peer][procs]
			o, ok2 := best[t.ours][procs]
			b, ok3 := best[t.base][procs]
			if !ok1 || !ok2 || !ok3 {
				continue
			}
			if !header {
				fmt.Printf("\n%-64s %9s %9s %9s %8s %8s %8s %8s %9s\n", "beside a peer (ns/op)", "uncached", "peer", "ours", "peer +ns", "ours +ns", "peer +al", "ours +al", "ours/peer")
				header = true
			}
			label := t.label
			if procs != "1" {
				label += " -cpu " + procs
			}
			fmt.Printf("%-64s %9.1f %9.1f %9.1f %+8.1f %+8.1f %+8.0f %+8.0f %9.2f\n", label, b.ns, p.ns, o.ns, p.ns-b.ns, o.ns-b.ns, p.allocs-b.allocs, o.allocs-b.allocs, o.ns/p.ns)
		}
	}
}

func num(s string) float64 {
	if s == "" {
		return 0
	}
	v, _ := strconv.ParseFloat(s, 64)
	return v
}
