package core

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend/backendtest"
)

// A near cache answers from the key alone (keyedHit) also on an entry
// another instance stored, once a hit by the general way found that the
// entry's first counters are the ones this route names for its key
// (call.vouch). Such hits end as soon as an invalidation of any of the
// entry's counters completed here, or arrived from elsewhere; and another
// route sharing the key, with other tags, never takes the entry by its
// key alone.
func TestNearFastHitOnAnEntryStoredElsewhere(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	url := "redis://" + addr + "/0?timeout=5s&near_max_bytes=4MiB"
	prefix := testPrefix()
	open := func(url string) *Cache { return openRegion(t, url, prefix) }
	// A reads Redis directly, so its fills see every invalidation at once.
	a, b := open("redis://"+addr+"/0?timeout=5s"), open(url)
	route := func(c *Cache, tags ...string) *Route {
		rt, err := c.Route("r", Tags(tags...))
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rta, rtb, other := route(a, "item:{id}", "all"), route(b, "item:{id}", "all"), route(b, "elsewhere:{id}")
	nb := rtb.r.near
	if nb == nil || !rtb.keyedHits {
		t.Fatal("not the near fast hit path")
	}
	waitCoherent(t, nb)
	applied := make(chan string, 64)
	nb.OnApplied(func(counter string) { applied <- counter })
	req := httptest.NewRequest("GET", "/items/1", nil)
	var buf [stackKeyBytes]byte
	k, ok := rtb.appendStackKey(buf[:0], req, "/items/:id")
	if !ok {
		t.Fatal("the key is not built on the stack")
	}
	key := string(k)
	fast := func(rt *Route) bool { e, _, _ := rt.keyedHit(key); return e != nil }
	serve := func(rt *Route, body string) *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		err := rt.handle(w, httptest.NewRequest("GET", "/items/1", nil), mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
			_, err := io.WriteString(w, body)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	version := 0
	body := func() string { return fmt.Sprintf("v%d", version) }
	// fillAtA stores the current version from A; warmB serves it from B
	// until B's hits come from the key alone.
	fillAtA := func(step string) {
		t.Helper()
		if w := serve(rta, body()); xcache(w) != "MISS" || w.Body.String() != body() {
			t.Fatalf("%s: A's fill: %q %q", step, xcache(w), w.Body.String())
		}
	}
	warmB := func(step string) {
		t.Helper()
		for i := 0; !fast(rtb); i++ {
			if w := serve(rtb, "B's own"); xcache(w) != "HIT" || w.Body.String() != body() {
				t.Fatalf("%s: B's hit %d: %q %q", step, i, xcache(w), w.Body.String())
			}
			if i > 3 {
				t.Fatalf("%s: no hit from the key alone after %d hits on A's entry", step, i)
			}
		}
		if fast(other) {
			t.Fatalf("%s: a route with other tags took A's entry by its key alone", step)
		}
	}
	ended := func(step string) {
		t.Helper()
		if fast(rtb) {
			t.Fatalf("%s: a hit from the key alone after the invalidation completed", step)
		}
		version++
		fillAtA(step)
	}
	remote := func(tag string) {
		t.Helper()
		counter := b.regions["r"].tagCounter(tag)
		if err := a.InvalidateTags(context.Background(), tag); err != nil {
			t.Fatal(err)
		}
		for deadline := time.After(30 * time.Second); ; {
			select {
			case c := <-applied:
				if c == counter {
					return
				}
			case <-deadline:
				t.Fatalf("B never applied the invalidation of %s", tag)
			}
		}
	}
	ctx := context.Background()

	fillAtA("first")
	warmB("first")
	if err := b.InvalidateTags(ctx, "item:1"); err != nil {
		t.Fatal(err)
	}
	ended("B's InvalidateTags")

	warmB("before A's invalidation")
	remote("all") // a tag B never invalidated: its only message is A's
	ended("A's InvalidateTags")

	warmB("before B's InvalidateKey")
	if err := b.InvalidateKey(ctx, "r", "/items/1"); err != nil {
		t.Fatal(err)
	}
	ended("B's InvalidateKey")
	warmB("last")
	if w := serve(other, "other's"); xcache(w) != "MISS" || w.Body.String() != "other's" {
		t.Fatalf("a route with other tags on A's entry: %q %q", xcache(w), w.Body.String())
	}
}
