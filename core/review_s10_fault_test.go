package core_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// Session 10 review, black-box: the promises of a pending invalidation
// and of fail-open, against private servers the tests start and fault
// (CLIENT PAUSE WRITE).

// Promise (docs/invalidation.md, "When an invalidation fails"): while an
// invalidation is pending on a backend, nothing is served from the cache
// in this process — lookups miss and fills are not handed to waiting
// requests — since the process cannot tell what the pending bump would
// invalidate.
//
// Fault: Redis refuses writes (CLIENT PAUSE WRITE) while a memoized
// function runs, so a tag invalidation made meanwhile stays pending. A
// Load that begins after the invalidation was accepted joins the run
// that began before it. The run's value was handed to it all the same
// (memoize's fallback for values it shares without an entry checked
// only the counters, which the pending bump had not moved yet): the
// value the function computed from the data before the change.
func TestMemoizeWaiterNotHandedARunWhileAnInvalidationIsPending(t *testing.T) {
	srv := startRedisProc(t)
	url := "redis://" + srv.addr() + "/0?timeout=100ms"
	c, err := core.New(core.Config{
		Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: uniquePrefix(t), TTL: time.Hour}},
		Breaker: core.BreakerConfig{Failures: 1 << 20}, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var version, calls atomic.Int64
	version.Store(1)
	started, release := make(chan struct{}), make(chan struct{})
	fn := func(ctx context.Context) (string, error) {
		v := version.Load() // the function reads its data
		if calls.Add(1) == 1 {
			close(started)
			<-release // ...and is slow to return
		}
		return fmt.Sprintf("v%d", v), nil
	}
	load := func() <-chan string {
		out := make(chan string, 1)
		go func() {
			v, err := core.Load(context.Background(), c, "r", "k", fn, core.WithTags("item"))
			if err != nil {
				t.Error(err)
			}
			out <- v
		}()
		return out
	}
	first := load()
	<-started
	unpause := pauseWrites(t, srv.addr())
	version.Store(2)
	if err := c.InvalidateTags(context.Background(), "item"); !errors.Is(err, core.ErrInvalidationPending) {
		t.Fatalf("InvalidateTags against a Redis refusing writes: %v, want ErrInvalidationPending", err)
	}
	// A Load that begins now joins the run begun before the change.
	second := load()
	waitFor(t, "the second Load to wait for the first's run", func() bool { return flightWaiters() == 1 })
	close(release)
	if v := <-first; v != "v1" {
		t.Fatalf("the first Load returned %q, want its own run's v1", v)
	}
	if v := <-second; v == "v1" {
		t.Fatalf("a Load begun while the invalidation was pending returned %q, computed before the change", v)
	}
	unpause()
}
