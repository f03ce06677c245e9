package core

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// A hit on a near cache is answered from the key alone (keyedHit,
// near.Cache.Fresh) once a hit read the entry's counters locally, and
// never again once an invalidation completed: a local InvalidateKey or
// InvalidateTags, another instance's invalidation once its message has
// been applied, or every local counter dropped (a resubscription, as on
// a restart Redis reports: OnReset). After an invalidation the next
// request misses and stores the handler's new answer.
func TestNearFastHitEndsWithInvalidation(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	url := "redis://" + addr + "/0?timeout=5s&near_max_bytes=4MiB"
	prefix := testPrefix()
	a, b := openRegion(t, url, prefix), openRegion(t, url, prefix)
	rt, err := b.Route("r", Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	if rt.r.near == nil || !rt.keyedHits {
		t.Fatal("not the near fast hit path")
	}
	nb := rt.r.near
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitCoherent(t, nb)
	req := httptest.NewRequest("GET", "/items/1", nil)
	var buf [stackKeyBytes]byte
	k, ok := rt.appendStackKey(buf[:0], req, "/items/:id")
	if !ok {
		t.Fatal("the key is not built on the stack")
	}
	key := string(k)
	fast := func() bool { e, _, _ := rt.keyedHit(key); return e != nil }
	version := 0
	// warm serves until hits come from the key alone, each a HIT of the
	// current version.
	warm := func(step string) {
		t.Helper()
		body := "v" + string(rune('0'+version))
		for i := 0; !fast(); i++ {
			w := memServe(t, rt, "/items/1", "1", body)
			if w.Body.String() != body || i > 0 && xcache(w) != "HIT" {
				t.Fatalf("%s: warming %d: %q %q", step, i, xcache(w), w.Body.String())
			}
			if i > 3 {
				t.Fatalf("%s: no fast hit after %d requests", step, i)
			}
		}
		if w := memServe(t, rt, "/items/1", "1", "other"); xcache(w) != "HIT" || w.Body.String() != body {
			t.Fatalf("%s: fast hit: %q %q", step, xcache(w), w.Body.String())
		}
	}
	// ended checks that the completed invalidation ended the fast hits:
	// the next request misses and stores the new version.
	ended := func(step string) {
		t.Helper()
		if fast() {
			t.Fatalf("%s: a fast hit after the invalidation completed", step)
		}
		version++
		body := "v" + string(rune('0'+version))
		if w := memServe(t, rt, "/items/1", "1", body); xcache(w) != "MISS" || w.Body.String() != body {
			t.Fatalf("%s: after the invalidation: %q %q", step, xcache(w), w.Body.String())
		}
	}
	ctx := context.Background()

	warm("first")
	if err := b.InvalidateKey(ctx, "r", "/items/1"); err != nil {
		t.Fatal(err)
	}
	ended("local InvalidateKey")

	warm("before InvalidateTags")
	if err := b.InvalidateTags(ctx, "item:1"); err != nil {
		t.Fatal(err)
	}
	ended("local InvalidateTags")

	warm("before a remote invalidation")
	tagCounter := b.regions["r"].tagCounter("item:1")
	got := make(chan struct{}, 1)
	nb.OnApplied(func(counter string) {
		if counter == tagCounter {
			select {
			case got <- struct{}{}:
			default:
			}
		}
	})
	if err := a.InvalidateTags(ctx, "item:1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the invalidation message never reached B")
	}
	ended("remote InvalidateTags")

	// Every local counter dropped: B's subscription cut and restored
	// (dropAll on the cut and on the resubscription, as OnReset does).
	warm("before the resubscription")
	resubs := nb.Stats().Resubscribes
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	until("B to resubscribe", func() bool { return nb.Stats().Coherent && nb.Stats().Resubscribes > resubs })
	if fast() {
		t.Fatal("a fast hit after every local counter was dropped")
	}
	// The entry is read from Redis again: a hit, by the general way (the
	// copy decoded from Redis names no producer in this process).
	for i := 0; i < 3; i++ {
		if w := memServe(t, rt, "/items/1", "1", "other"); xcache(w) != "HIT" || w.Body.String() != "v"+string(rune('0'+version)) {
			t.Fatalf("after the resubscription: %q %q", xcache(w), w.Body.String())
		}
	}
}
