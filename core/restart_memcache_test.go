package core_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// A memcached restart is no stale-read risk (see docs/operations.md):
// memcached keeps nothing across a restart, so counters and entries vanish
// together. With one server, the first read after the restart is a miss.
// With several, a counter that lived on the restarted server is re-created
// with a fresh random value, so every entry that recorded it misses,
// wherever the entry lives: an invalidation made before the restart is
// never undone.
func TestMemcachedRestartServesNoOldEntries(t *testing.T) {
	t.Run("one server", func(t *testing.T) {
		srv := startMemcachedProc(t)
		a := newRestartApp(t, "memcache://"+srv.addr())
		a.rev.Store(1)
		a.hit(t, "rev 1")
		a.rev.Store(2) // the origin changed; nothing was invalidated
		srv.kill()
		srv.start()
		w := a.answer(t)
		if xc(w) != "MISS" || w.Body.String() != "rev 2" {
			t.Fatalf("first read after the restart: %s %q, want a MISS of rev 2", xc(w), w.Body.String())
		}
	})
	t.Run("two servers", func(t *testing.T) {
		srvs := []*serverProc{startMemcachedProc(t), startMemcachedProc(t)}
		url := "memcache://" + srvs[0].addr() + "," + srvs[1].addr()
		for victim := range srvs {
			a := newRestartApp(t, url) // a new prefix: new counters and entries
			a.rev.Store(1)
			a.hit(t, "rev 1")
			a.rev.Store(2)
			if err := a.c.InvalidateTags(context.Background(), "item:1"); err != nil {
				t.Fatal(err)
			}
			a.hit(t, "rev 2") // rev 1 invalidated, rev 2 stored
			a.rev.Store(3)
			srvs[victim].kill()
			srvs[victim].start()
			xcache := map[string]int{}
			for i := 0; i < 50; i++ {
				w := a.answer(t)
				xcache[xc(w)]++
				if w.Body.String() == "rev 1" {
					t.Fatalf("server %d restarted: read %d served rev 1, invalidated before the restart", victim, i)
				}
			}
			t.Logf("server %d of 2 restarted: X-Cache %v over 50 reads", victim, xcache)
		}
	})
}

type restartApp struct {
	c   *core.Cache
	rt  *core.Route
	rev atomic.Int64
}

func newRestartApp(t *testing.T, url string) *restartApp {
	t.Helper()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: url + "?timeout=500ms", Prefix: uniquePrefix(t), TTL: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rt, err := c.Route("r", core.Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	return &restartApp{c: c, rt: rt}
}

func (a *restartApp) serve() *httptest.ResponseRecorder {
	return serveOnce(a.rt, "/items/1", mapParams{"id": "1"}, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "rev %d", a.rev.Load())
	})
}

func (a *restartApp) hit(t *testing.T, body string) {
	t.Helper()
	waitFor(t, "HIT "+body, func() bool {
		w := a.serve()
		return xc(w) == "HIT" && w.Body.String() == body
	})
}

// answer serves until the cache answers (not a BYPASS while the client
// reconnects and the breaker probes).
func (a *restartApp) answer(t *testing.T) *httptest.ResponseRecorder {
	t.Helper()
	var w *httptest.ResponseRecorder
	waitFor(t, "an answer from the cache", func() bool {
		w = a.serve()
		return xc(w) != "BYPASS"
	})
	return w
}
