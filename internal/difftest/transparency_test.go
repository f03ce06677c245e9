package difftest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// seed returns the run's shuffling seed: DIFFTEST_SEED when set (to replay
// a failure), else a fresh one. Every failure message prints it.
func seed(t *testing.T) uint64 {
	if s := os.Getenv("DIFFTEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("routecache: DIFFTEST_SEED=%q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// shuffled returns reps copies of cases in a random order.
func shuffled(cases []reqCase, reps int, rng *rand.Rand) []reqCase {
	var out []reqCase
	for i := 0; i < reps; i++ {
		out = append(out, cases...)
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// runSequential sends the cases one after the other.
func runSequential(p *pair, cases []reqCase) []diff {
	var c collector
	for _, rc := range cases {
		c.add(p.exchange(rc))
	}
	return c.diffs
}

// runConcurrent sends the cases from several goroutines at once, so that
// fills, coalesced waits and hits of related keys interleave.
func runConcurrent(p *pair, cases []reqCase, workers int) []diff {
	var c collector
	work := make(chan reqCase)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rc := range work {
				c.add(p.exchange(rc))
			}
		}()
	}
	for _, rc := range cases {
		work <- rc
	}
	close(work)
	wg.Wait()
	return c.diffs
}

// runPair sends a case and its partner in both orders, each order from an
// empty cache: whichever is stored first, the other must not receive it.
// (Each request's replay of its own entry is TestTransparency's part.)
func runPair(tb testing.TB, p *pair, a, b reqCase) []diff {
	var c collector
	for _, order := range [][2]reqCase{{b, a}, {a, b}} {
		p.reset(tb)
		c.add(p.exchange(order[0]))
		c.add(p.exchange(order[1]))
	}
	return c.diffs
}

// TestTransparency sends the whole corpus, twice over, in a seeded random
// order and then concurrently, to each front cached and uncached, on the
// memory backend and on Redis, and compares every pair of answers.
func TestTransparency(t *testing.T) {
	s := seed(t)
	t.Logf("shuffling seed %d (rerun with DIFFTEST_SEED=%d)", s, s)
	for _, f := range fronts {
		for _, be := range backends {
			t.Run(f.name+"/"+be.name, func(t *testing.T) {
				t.Parallel()
				p := newTCPPair(t, f, be, false)
				rng := rand.New(rand.NewPCG(s, uint64(len(f.name)*31+len(be.name))))
				label := fmt.Sprintf("seed %d (rerun with DIFFTEST_SEED=%d)", s, s)
				p.reset(t)
				report(t, "sequential, "+label, runSequential(p, shuffled(corpus, 2, rng)))
				p.reset(t)
				report(t, "concurrent, "+label, runConcurrent(p, shuffled(corpus, 2, rng), 4))
				// Not vacuous: many answers came from the cache, and
				// conditional requests were answered 304 by it.
				if h := p.hits.Load(); h < int64(len(corpus)/2) {
					t.Errorf("only %d cached answers were hits: the run hardly exercised the cache", h)
				}
				if p.notModified.Load() == 0 {
					t.Error("no conditional request was answered 304 by the cache: the 304 rule was never exercised")
				}
			})
		}
	}
}

// TestPairs sends each case with its partner (the request it would share
// an entry with if the cache ignored what tells them apart), in both
// orders from an empty cache: one subtest per case, so a failure names
// the request form that leaks.
func TestPairs(t *testing.T) {
	byName := caseByName(corpus)
	for _, f := range fronts {
		for _, be := range backends {
			t.Run(f.name+"/"+be.name, func(t *testing.T) {
				t.Parallel()
				p := newTCPPair(t, f, be, false)
				for _, c := range corpus {
					if c.partner == "" {
						continue
					}
					partner, ok := byName[c.partner]
					if !ok {
						t.Fatalf("routecache: case %q: no partner %q in the corpus", c.name, c.partner)
					}
					t.Run(c.name, func(t *testing.T) {
						report(t, "partner "+partner.name, runPair(t, p, c, partner))
					})
				}
			})
		}
	}
}

// TestHarnessDetectsLeak proves the harness can fail: a route whose
// handler reads X-Custom, a header the region does not key on, must be
// reported by the pair check, the sequential and the concurrent runs, on
// every front. A harness that compared too little would pass it.
func TestHarnessDetectsLeak(t *testing.T) {
	byName := caseByName(unsafeCorpus)
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			p := newTCPPair(t, f, backends[0], true)
			a, b := byName["unsafe-a"], byName["unsafe-b"]
			checks := []struct {
				name  string
				diffs []diff
			}{
				{"pair", runPair(t, p, a, b)},
				{"sequential", func() []diff { p.reset(t); return runSequential(p, []reqCase{a, b, a, b}) }()},
				{"concurrent", func() []diff {
					p.reset(t)
					return runConcurrent(p, shuffled(unsafeCorpus, 4, rand.New(rand.NewPCG(1, 2))), 4)
				}()},
			}
			for _, c := range checks {
				if len(c.diffs) == 0 {
					t.Errorf("%s: the harness did not report the unsafe route's leak", c.name)
					continue
				}
				for _, d := range c.diffs {
					if d.why != "body differs" {
						t.Errorf("%s: reported %q, want a body difference:\n%s", c.name, d.why, d)
					}
				}
			}
		})
	}
}
