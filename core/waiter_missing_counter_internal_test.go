package core

import (
	"context"
	"testing"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// A request waiting on another request's fill found one of its counters
// missing on a remote store. Missing, the counter was either never created
// (the fill created it: its snapshot holds the new value, and the waiter
// takes the result, one origin call for a cold key) or evicted after an
// invalidation that completed before the waiter looked: the result
// predates that invalidation and the waiter must not take it, though the
// value it read (0) is the same in both cases.
func TestWaiterTakesAFillOnlyWhileCountersItFoundMissingHoldTheFillsValues(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	c := openRegion(t, "redis://"+addr+"/0?timeout=5s", testPrefix())
	rt, err := c.Route("r", Tags("a:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	r := rt.r
	ctx := context.Background()
	name := r.tagCounter("a:1")
	// The fill's producer ensured the counter before it ran: the cold
	// key's counter is created then, and its snapshot holds that value.
	vals := []uint64{0}
	if err := r.be.Ensure(ctx, []string{name}, vals); err != nil || vals[0] == 0 {
		t.Fatalf("Ensure: %v, value %d", err, vals[0])
	}
	snap := []backend.CounterSnap{{Name: name, Value: vals[0]}}
	// A waiter that looked before the counter existed read it as 0.
	mayTake := func() bool {
		w := &call{r: r, ctx: ctx, names: []string{name}, vals: []uint64{0}}
		return snapshotAgrees(snap, w.names, w.vals) && w.othersAgree(snap)
	}
	if !mayTake() {
		t.Fatal("a waiter that looked before the fill created its counter does not take the fill's result")
	}
	if err := c.InvalidateTags(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	if mayTake() {
		t.Fatal("a waiter takes a fill's result after the counter was invalidated")
	}
	// The invalidated counter is evicted: a waiter looking now reads 0.
	if n, err := r.be.(*redisbe.Backend).Client().Del(ctx, name).Result(); err != nil || n != 1 {
		t.Fatalf("deleting the counter: %d deleted, %v", n, err)
	}
	if mayTake() {
		t.Fatal("a waiter takes a fill's result that predates an invalidation, its counter evicted since")
	}
}
