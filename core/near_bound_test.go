package core_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core"
)

// nearHeldBytes is the live heap after GC.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// The near cache's local counters are bounded: reading counters for
// 300,000 distinct paths through a near cache of 1 MiB holds no more than
// that budget, where the map used to keep every counter it ever read.
func TestNearLocalCountersBounded(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?near_max_bytes=1MiB"
	c := newBackendCache(t, url, core.RegionConfig{})
	nb := nearOf(c)
	const paths = 300_000
	before := liveHeap()
	names := make([]string, 1)
	vals := make([]uint64, 1)
	for i := 0; i < paths; i++ {
		names[0] = core.KeyCounter(c, "r", fmt.Sprintf("/articles/%d?page=%d", i, i%7))
		vals[0] = uint64(i) + 2
		nb.Remember(names, vals)
	}
	held := liveHeap() - before
	runtime.KeepAlive(nb)
	t.Logf("%d distinct paths through a 1 MiB near cache: local counters hold %.2f MiB of heap (%d kept)",
		paths, float64(held)/(1<<20), nb.LocalCounters())
	if held > 1<<20 {
		t.Fatalf("local counters hold %d bytes for a 1 MiB near budget", held)
	}
}

// A counter the near cache evicted is read from Redis again, never
// assumed: an invalidation that reached Redis without a pub/sub message
// (written straight to the counter) is seen once the local copy is gone.
func TestNearEvictedCounterIsReread(t *testing.T) {
	addr := testServer(t, "ROUTECACHE_TEST_REDIS")
	url := "redis://" + addr + "/0?near_max_bytes=64KiB"
	c := newBackendCache(t, url, core.RegionConfig{TTL: time.Hour})
	nb := nearOf(c)
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	version := 0
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version) }
	serveOnce(rt, "/items/0", noParams, h)
	if w := serveOnce(rt, "/items/0", noParams, h); w.Header().Get("X-Cache") != "HIT" {
		t.Fatal("not cached")
	}
	name := core.KeyCounter(c, "r", "/items/0")
	// Fill the local counters far past their bound with other paths.
	for i := 1; i < 20_000; i++ {
		nb.Remember([]string{core.KeyCounter(c, "r", fmt.Sprintf("/other/%d", i))}, []uint64{uint64(i) + 2})
	}
	if nb.HasLocal(name) {
		t.Fatalf("the first counter survived %d newer ones in a 64 KiB near cache", 20_000)
	}
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	if err := cl.Incr(context.Background(), name).Err(); err != nil {
		t.Fatal(err)
	}
	version = 1
	if w := serveOnce(rt, "/items/0", noParams, h); w.Body.String() != "1" {
		t.Fatalf("after the counter moved in Redis: %q (%s), want 1", w.Body.String(), w.Header().Get("X-Cache"))
	}
}
