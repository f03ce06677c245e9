package core_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// A hostile value planted under a counter key (the region's own counter,
// which every lookup of the region reads, or one path's key counter) costs
// a bounded read: counters are read with GETRANGE of at most 64 bytes, as
// entries are bounded by the largest entry. A longer value reads as a
// missing counter and is repaired.
func TestHostileCounterValueIsBounded(t *testing.T) {
	const planted = 64 << 20
	for name, u := range redisURLs(t) {
		for _, which := range []string{"region counter", "key counter"} {
			t.Run(name+"/"+which, func(t *testing.T) {
				pc := plantClient(t, name == "cluster")
				u := withQuery(u, "timeout=5s")
				_, r, rt := hostileCache(t, u)
				var calls atomic.Int64
				h := func(w http.ResponseWriter, req *http.Request) {
					fmt.Fprintf(w, "%s #%d", req.URL.Path, calls.Add(1))
				}
				for _, id := range []string{"1", "2"} {
					serveOnce(rt, "/items/"+id, mapParams{"id": id}, h)
				}
				names, ok := core.CounterNames(rt, newGet("/items/1"), mapParams{"id": "1"}, "/items/:id")
				if !ok {
					t.Fatal("build")
				}
				target := names[0] // the region counter
				if which == "key counter" {
					target = names[1]
				}
				ctx := context.Background()
				t.Cleanup(func() { pc.Del(context.Background(), target) })
				if err := pc.Set(ctx, target, strings.Repeat("7", planted), 0).Err(); err != nil {
					t.Fatal(err)
				}
				out0 := netOutput(t, pc)
				for _, id := range []string{"1", "2", "1", "2"} {
					serveOnce(rt, "/items/"+id, mapParams{"id": id}, h)
				}
				sent := netOutput(t, pc) - out0
				t.Logf("%s planted: the servers sent %d bytes for 4 requests; stats %+v", which, sent, r.Stats())
				if sent > 16<<20 {
					t.Errorf("%s: the servers sent %d bytes for 4 requests: the read of a planted counter is not bounded", which, sent)
				}
				if s := r.Stats(); s.Breaker != core.BreakerClosed {
					t.Errorf("%s: breaker %s", which, s.Breaker)
				}
			})
		}
	}
}

// With the default timeout (250ms), a huge value under one key counter is
// no backend error: the read is bounded, the breaker stays closed and
// every other key of the backend keeps hitting.
func TestHostileKeyCounterLeavesOtherKeysCached(t *testing.T) {
	const planted = 256 << 20
	u := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0"
	pc := plantClient(t, false)
	_, r, rt := hostileCache(t, u)
	h := func(w http.ResponseWriter, req *http.Request) { fmt.Fprint(w, req.URL.Path) }
	for _, id := range []string{"1", "2", "2"} {
		serveOnce(rt, "/items/"+id, mapParams{"id": id}, h)
	}
	names, _ := core.CounterNames(rt, newGet("/items/1"), mapParams{"id": "1"}, "/items/:id")
	target := names[1]
	t.Cleanup(func() { pc.Del(context.Background(), target) })
	if err := pc.Set(context.Background(), target, strings.Repeat("7", planted), 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)
	}
	w := serveOnce(rt, "/items/2", mapParams{"id": "2"}, h)
	if got := w.Header().Get("X-Cache"); got != "HIT" {
		t.Fatalf("/items/2 (not planted): X-Cache %q, want HIT; stats %+v", got, r.Stats())
	}
}

// The same through a lease key: the lease poll reads a bounded prefix, a
// foreign value holds the lease until LeaseWait, and the other keys keep
// hitting.
func TestHostileLeaseValueLeavesOtherKeysCached(t *testing.T) {
	const planted = 256 << 20
	u := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0"
	pc := plantClient(t, false)
	_, r, rt := hostileCache(t, u)
	h := func(w http.ResponseWriter, req *http.Request) { fmt.Fprint(w, req.URL.Path) }
	serveOnce(rt, "/items/2", mapParams{"id": "2"}, h)
	lkey := core.LeaseKey(rt, newGet("/items/1"), mapParams{"id": "1"}, "/items/:id")
	t.Cleanup(func() { pc.Del(context.Background(), lkey) })
	if err := pc.Set(context.Background(), lkey, strings.Repeat("x", planted), 0).Err(); err != nil {
		t.Fatal(err)
	}
	serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)
	w := serveOnce(rt, "/items/2", mapParams{"id": "2"}, h)
	if got := w.Header().Get("X-Cache"); got != "HIT" {
		t.Fatalf("/items/2 (not planted): X-Cache %q, want HIT; stats %+v", got, r.Stats())
	}
}
