package main

import (
	"strings"
	"testing"
)

// TestParseJoinsFiguresAfterLogLines: a benchmark whose name line was cut
// by log output still gets the figures printed on a later line, and each
// benchmark keeps its fastest run per -cpu value.
func TestParseJoinsFiguresAfterLogLines(t *testing.T) {
	out := `BenchmarkRedis/memory-hit         	 1000000	      2340 ns/op	      16 B/op	       1 allocs/op
BenchmarkRedis/near-hit           	2026/12/02 20:37:51 INFO routecache: first use of these regions
2026/12/02 20:37:51 INFO routecache: first use of these regions
  780846	      2589 ns/op	      16 B/op	       1 allocs/op
BenchmarkX/hit-2   	 100	 50.5 ns/op	 0 B/op	 0 allocs/op
BenchmarkX/hit-2   	 100	 40.5 ns/op	 0 B/op	 0 allocs/op
BenchmarkX/hit     	 100	 70 ns/op
`
	best := parse(strings.NewReader(out))
	if r := best["BenchmarkRedis/near-hit"]["1"]; r.ns != 2589 || r.allocs != 1 {
		t.Fatalf("near-hit: %+v", r)
	}
	if r := best["BenchmarkRedis/memory-hit"]["1"]; r.ns != 2340 {
		t.Fatalf("memory-hit: %+v", r)
	}
	if r := best["BenchmarkX/hit"]["2"]; r.ns != 40.5 {
		t.Fatalf("X/hit -cpu 2: %+v, want the fastest, 40.5", r)
	}
	if r := best["BenchmarkX/hit"]["1"]; r.ns != 70 {
		t.Fatalf("X/hit -cpu 1: %+v", r)
	}
}
