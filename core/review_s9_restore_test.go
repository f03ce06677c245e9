package core_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core"
)

// Session 9 review. Attack: a Redis restored from a snapshot while B's
// near cache answers an entry A stored by its key alone (a vouched route)
// and another entry's runtime tag from its local copy (ReadLocal). Both
// were invalidated by A after the SAVE; after the restart from the RDB
// (which holds the old counters and entries), B never serves rev 1.
func TestReviewS9RestoreWithVouchedAndRuntimeLocalNear(t *testing.T) {
	srv := startRedisPersistent(t, false)
	url := "redis://" + srv.addr() + "/0?timeout=500ms"
	prefix := uniquePrefix(t)
	open := func(u string) *core.Cache {
		c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: u, Prefix: prefix, TTL: time.Hour}}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := open(url), open(url+"&near_max_bytes=4MiB")
	route := func(c *core.Cache) *core.Route {
		rt, err := c.Route("r", core.Tags("item:{id}"))
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rta, rtb := route(a), route(b)
	var rev atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/items/2" {
			core.AddTags(r.Context(), "owner:2")
		}
		fmt.Fprintf(w, "rev %d", rev.Load())
	}
	hitWith := func(rt *core.Route, id, body string) {
		t.Helper()
		waitFor(t, "HIT "+body+" on /items/"+id, func() bool {
			w := serveOnce(rt, "/items/"+id, mapParams{"id": id}, h)
			return xc(w) == "HIT" && w.Body.String() == body
		})
		for i := 0; i < 3; i++ { // the vouch, then hits from the key alone
			if w := serveOnce(rt, "/items/"+id, mapParams{"id": id}, h); xc(w) != "HIT" || w.Body.String() != body {
				t.Fatalf("/items/%s: %q %q, want HIT %q", id, xc(w), w.Body.String(), body)
			}
		}
	}
	rev.Store(1)
	for _, id := range []string{"1", "2"} {
		hitWith(rta, id, "rev 1") // A stores
		hitWith(rtb, id, "rev 1") // B hits A's entry
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rev.Store(2)
	if err := a.InvalidateTags(ctx, "item:1", "owner:2"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		hitWith(rta, id, "rev 2")
		hitWith(rtb, id, "rev 2")
	}
	srv.kill()
	srv.start() // loads the SAVE's RDB: rev 1's entries and counters
	if n, err := admin.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Fatalf("the restarted server did not load the snapshot: %d keys, %v", n, err)
	}
	for _, id := range []string{"1", "2"} {
		served, stale := 0, 0
		for attempts := 0; served < 50 && attempts < 2500; attempts++ {
			w := serveOnce(rtb, "/items/"+id, mapParams{"id": id}, h)
			if xc(w) == "BYPASS" { // reconnecting (breaker)
				time.Sleep(5 * time.Millisecond)
				continue
			}
			served++
			if w.Body.String() == "rev 1" {
				stale++
			}
		}
		if served < 50 || stale != 0 {
			t.Errorf("/items/%s after the restore: %d served, %d of them rev 1 (invalidated before the restart)", id, served, stale)
		}
	}
}
