package core

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	c := newBackendCache(t, url, RegionConfig{})
	nb := nearOf(c)
	r := c.regions["r"]
	const paths = 300_000
	before := liveHeap()
	names := make([]string, 1)
	vals := make([]uint64, 1)
	for i := 0; i < paths; i++ {
		names[0] = r.keyCounter(fmt.Sprintf("/articles/%d?page=%d", i, i%7))
		vals[0] = uint64(i) + 2
		nb.install(nb.epoch.Load(), names, vals)
	}
	held := liveHeap() - before
	runtime.KeepAlive(nb)
	t.Logf("%d distinct paths through a 1 MiB near cache: local counters hold %.2f MiB of heap (%d kept)",
		paths, float64(held)/(1<<20), nb.localLen())
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
	c := newBackendCache(t, url, RegionConfig{TTL: time.Hour})
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
	name := c.regions["r"].keyCounter("/items/0")
	// Fill the local counters far past their bound with other paths.
	for i := 1; i < 20_000; i++ {
		nb.install(nb.epoch.Load(), []string{c.regions["r"].keyCounter(fmt.Sprintf("/other/%d", i))}, []uint64{uint64(i) + 2})
	}
	if nb.localHas(name) {
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

func (n *nearBackend) localLen() int { n.mu.RLock(); defer n.mu.RUnlock(); return n.local.len() }
func (n *nearBackend) localHas(s string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	_, ok := n.local.idx[s]
	return ok
}

// The CLOCK keeps a counter that is being read and evicts the idle ones;
// dropped and reset counters are gone and their bytes are released.
func TestNearLocalCountersClock(t *testing.T) {
	l := newLocalCounters(10 * localCost("k00000"))
	for i := 0; i < 10; i++ {
		l.put(fmt.Sprintf("k%05d", i), nearCounter{v: uint64(i)})
	}
	for i := 10; i < 1000; i++ {
		if _, ok := l.get("k00000"); !ok {
			t.Fatalf("the counter read before every insertion was evicted at %d", i)
		}
		l.put(fmt.Sprintf("k%05d", i), nearCounter{v: uint64(i)})
		if l.len() > 10 || l.bytes > l.budget {
			t.Fatalf("%d counters, %d bytes for a budget of %d", l.len(), l.bytes, l.budget)
		}
	}
	if c, ok := l.get("k00999"); !ok || c.v != 999 {
		t.Fatalf("newest counter: %v %v", c, ok)
	}
	l.del("k00999")
	if _, ok := l.get("k00999"); ok {
		t.Fatal("dropped counter still held")
	}
	l.reset()
	if l.len() != 0 || l.bytes != 0 {
		t.Fatalf("after reset: %d counters, %d bytes", l.len(), l.bytes)
	}
}
