package gincache_test

import (
	"fmt"
	"testing"

	"github.com/routecache/routecache/internal/benchwriter"
)

// TestBenchmarkSetupsHit: in the benchmarks' set-up, both caches answer
// every request after the first from the cache: their origin runs once and
// each later request counts a hit, as the cache itself reports it.
func TestBenchmarkSetupsHit(t *testing.T) {
	const requests = 5
	for _, v := range []string{peerHit, routeHit} {
		t.Run(v, func(t *testing.T) {
			s := newSetup(t, v, true)
			req := request()
			w := benchwriter.New()
			for range requests {
				s.serve(t, w, req)
			}
			s.checkHits(t, v, requests, true)
		})
	}
}

// TestCheckHitsFailsACacheThatNeverHits: the check the benchmarks end with
// rejects a cached variant whose requests reached the origin, with or
// without the hit count.
func TestCheckHitsFailsACacheThatNeverHits(t *testing.T) {
	for _, v := range []string{peerHit, routeHit} {
		s := newSetup(t, v, true)
		req := request()
		w := benchwriter.New()
		for i := range 3 {
			req.RequestURI = fmt.Sprintf("/articles/%d", i) // three keys: three misses
			req.URL.Path = req.RequestURI
			s.serve(t, w, req)
		}
		for _, countHits := range []bool{false, true} {
			ft := &fatalRecorder{TB: t}
			func() {
				defer func() { _ = recover() }()
				s.checkHits(ft, v, 3, countHits)
			}()
			if !ft.failed {
				t.Fatalf("checkHits passed %s (countHits %v) with %d origin calls and %d hits", v, countHits, s.origin.Load(), s.hits())
			}
		}
	}
}

// fatalRecorder records a Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
