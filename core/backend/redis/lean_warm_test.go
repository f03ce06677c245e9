package redis

import (
	"fmt"
	"sync"
	"testing"

	"github.com/routecache/routecache/core/backend"
)

// Prepare leaves the lean pool warm, as it leaves go-redis's: a burst of
// hits right after New reads on connections opened before it, and dials
// none on the request path (each dial costs a round trip more, the set-up
// with INFO, which a loaded machine can push past the timeout).
func TestPrepareWarmsTheLeanPool(t *testing.T) {
	const size = 8
	b := openTest(t, fmt.Sprintf("&pool_size=%d", size))
	dials := countDials(b)
	b.Prepare([]backend.RegionCounters{{Counters: []string{"rctest:leanwarm:c"}}})
	b.lean.mu.Lock()
	idle := len(b.lean.idle)
	b.lean.mu.Unlock()
	if idle != size || dials.Load() != size {
		t.Fatalf("after Prepare: %d idle lean connections from %d dials, want %d", idle, dials.Load(), size)
	}
	before := b.LeanLoads()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if r := load(b, fmt.Sprintf("rctest:leanwarm:%d", i), []string{"rctest:leanwarm:c"}); r.err != "" {
				t.Errorf("load: %s", r.err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := b.LeanLoads() - before; got != size {
		t.Fatalf("%d of %d Loads on the lean path", got, size)
	}
	if dials.Load() != size {
		t.Fatalf("%d dials after the burst, want the %d of Prepare", dials.Load(), size)
	}
}

// Connections dialled at the same moment each get vouched for (one waits
// for the other's check of the run_id): none is opened only to be closed,
// and every Load of a burst on a cold pool reads on the lean path.
func TestConcurrentLeanDialsAreAllVouchedFor(t *testing.T) {
	const size = 32
	b := openTest(t, fmt.Sprintf("&pool_size=%d", size))
	dials := countDials(b)
	load(b, "rctest:leanburst:warm", nil) // go-redis's first connection checks the server
	b.guard.setRegions(nil)
	before := b.LeanLoads()
	start := make(chan struct{})
	var wg sync.WaitGroup
	const each = 10
	for i := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := range each {
				if r := load(b, fmt.Sprintf("rctest:leanburst:%d:%d", i, j), []string{"rctest:leanburst:c"}); r.err != "" {
					t.Errorf("load: %s", r.err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := b.LeanLoads() - before; got != size*each {
		t.Fatalf("%d of %d Loads on the lean path", got, size*each)
	}
	if d := dials.Load(); d > size {
		t.Fatalf("%d lean dials for at most %d Loads at once", d, size)
	}
}
