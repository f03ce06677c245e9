package core

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend/backendtest"
)

// A near-cache hit on an entry whose handler added tags at run time
// (AddTags) reads those tags' counters from the local copies, as it reads
// the route's own, with no round trip (near.Cache.ReadLocal), and is then
// answered from the key alone (near.Cache.Fresh); an invalidation of such
// a tag, made here or by another instance once its message was applied,
// ends the hits all the same.
func TestNearHitReadsRuntimeTagsLocally(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	prefix := testPrefix()
	open := func(url string) *Cache { return openRegion(t, url, prefix) }
	a, b := open("redis://"+addr+"/0?timeout=5s"), open("redis://"+addr+"/0?timeout=5s&near_max_bytes=4MiB")
	rt, err := b.Route("r", Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	nb := rt.r.near
	waitCoherent(t, nb)
	applied := make(chan string, 64)
	nb.OnApplied(func(counter string) { applied <- counter })
	version := 0
	serve := func() *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		err := rt.handle(w, httptest.NewRequest("GET", "/items/1", nil), mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
			AddTags(r.Context(), "owner:1", "group:1")
			_, err := fmt.Fprintf(w, "v%d", version)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	want := func() string { return fmt.Sprintf("v%d", version) }
	var buf [stackKeyBytes]byte
	req := httptest.NewRequest("GET", "/items/1", nil)
	k, ok := rt.appendStackKey(buf[:0], req, "/items/:id")
	if !ok {
		t.Fatal("the key is not built on the stack")
	}
	key := string(k)
	fast := func() bool { e, _, _ := rt.keyedHit(key); return e != nil }
	// warm fills the current version if need be and hits it until a hit
	// is answered from the key alone; then several hits read no counter
	// from Redis.
	warm := func(step string) {
		t.Helper()
		if w := serve(); w.Body.String() != want() {
			t.Fatalf("%s: first: %q %q", step, xcache(w), w.Body.String())
		}
		for i := 0; !fast(); i++ {
			if w := serve(); xcache(w) != "HIT" || w.Body.String() != want() {
				t.Fatalf("%s: hit %d: %q %q", step, i, xcache(w), w.Body.String())
			}
			if i > 3 {
				t.Fatalf("%s: no hit from the key alone after %d hits", step, i)
			}
		}
		before := nb.Stats().RemoteCounterReads
		for i := 0; i < 5; i++ {
			if w := serve(); xcache(w) != "HIT" || w.Body.String() != want() {
				t.Fatalf("%s: local hit %d: %q %q", step, i, xcache(w), w.Body.String())
			}
		}
		if n := nb.Stats().RemoteCounterReads - before; n != 0 {
			t.Fatalf("%s: 5 hits read counters from Redis %d times", step, n)
		}
	}
	ended := func(step string) {
		t.Helper()
		if fast() {
			t.Fatalf("%s: a hit from the key alone after the invalidation completed", step)
		}
		version++
		if w := serve(); xcache(w) != "MISS" || w.Body.String() != want() {
			t.Fatalf("%s: after the invalidation: %q %q", step, xcache(w), w.Body.String())
		}
		if w := serve(); xcache(w) != "HIT" || w.Body.String() != want() {
			t.Fatalf("%s: the refill: %q %q", step, xcache(w), w.Body.String())
		}
	}
	ctx := context.Background()
	// appliedOf waits until B applied the message of tag's invalidation
	// (its own comes back to it too, and drops the copy once more).
	appliedOf := func(tag string) {
		t.Helper()
		counter := b.regions["r"].tagCounter(tag)
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

	warm("first")
	if err := b.InvalidateTags(ctx, "owner:1"); err != nil {
		t.Fatal(err)
	}
	ended("B's invalidation of a runtime tag")
	appliedOf("owner:1")

	warm("before A's invalidation")
	if err := a.InvalidateTags(ctx, "group:1"); err != nil { // a tag B never invalidated
		t.Fatal(err)
	}
	appliedOf("group:1")
	ended("A's invalidation of a runtime tag")
}
