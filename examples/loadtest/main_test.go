package main

import (
	"strings"
	"testing"
	"time"
)

// TestRunSmoke drives each in-process variant briefly: every request
// succeeds, and the cached variant calls its origin once (the warm-up).
func TestRunSmoke(t *testing.T) {
	for _, v := range []variant{{name: "uncached"}, {name: "static+hdr", hitHeaders: true}, {name: "memory", backend: "memory://"}} {
		rps, _, _, origin, err := run(v, 200*time.Millisecond, 4)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if rps <= 0 {
			t.Fatalf("%s: no throughput", v.name)
		}
		if v.backend != "" && origin != 1 {
			t.Fatalf("%s: %d origin calls, want 1", v.name, origin)
		}
		if v.backend == "" && origin < 2 {
			t.Fatalf("uncached: %d origin calls", origin)
		}
	}
}

// TestReportPrintsRatiosToUncached: each cached variant's line carries its
// requests/s and p99 over the uncached variant's, from the median round.
func TestReportPrintsRatiosToUncached(t *testing.T) {
	vs := []variant{{name: "uncached"}, {name: "memory", backend: "memory://"}}
	results := [][]result{
		{{rps: 1000, p99: 4 * time.Millisecond}, {rps: 900, p99: 5 * time.Millisecond}, {rps: 1100, p99: 3 * time.Millisecond}},
		{{rps: 3000, p99: 2 * time.Millisecond}, {rps: 2000, p99: 1 * time.Millisecond}, {rps: 4000, p99: 8 * time.Millisecond}},
	}
	var out strings.Builder
	report(&out, vs, results)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines:\n%s", len(lines), out.String())
	}
	// medians: uncached 1000 req/s, p99 4ms; memory 3000 req/s, p99 2ms.
	if f := strings.Fields(lines[2]); f[0] != "memory" || f[1] != "3000" || f[len(f)-2] != "3.00x" || f[len(f)-1] != "0.50x" {
		t.Fatalf("memory line %q: want 3000 req/s, 3.00x req/s, 0.50x p99", lines[2])
	}
	if f := strings.Fields(lines[1]); f[0] != "uncached" || f[1] != "1000" || len(f) != 5 {
		t.Fatalf("uncached line %q", lines[1])
	}
}
