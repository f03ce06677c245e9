package core_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// A soft invalidation serves the old entry as STALE at once, refreshes it
// in the background, and the next request gets the new data as a HIT; a
// hard invalidation after a soft one makes the entry unusable.
func TestSoftInvalidation(t *testing.T) {
	backends := map[string]string{"memory": ""}
	if addr := testServerOptional(t, "ROUTECACHE_TEST_REDIS"); addr != "" {
		backends["redis"] = "redis://" + addr + "/0?timeout=5s"
		backends["redis-near"] = "redis://" + addr + "/0?timeout=5s&near_max_bytes=1MiB"
	}
	if addrs := testServerOptional(t, "ROUTECACHE_TEST_MEMCACHE"); addrs != "" {
		backends["memcache"] = "memcache://" + addrs + "?timeout=2s"
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			c := newBackendCache(t, url, core.RegionConfig{SoftInvalidation: true})
			rt, _ := c.Route("r", core.Tags("item:{id}"))
			p := mapParams{"id": "1"}
			var version atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
			serveOnce(rt, "/items/1", p, h)
			version.Add(1)
			ctx := context.Background()
			if err := c.InvalidateTagsSoft(ctx, "item:1"); err != nil {
				t.Fatal(err)
			}
			w := serveOnce(rt, "/items/1", p, h)
			if w.Header().Get("X-Cache") != "STALE" || w.Body.String() != "0" {
				t.Fatalf("after soft invalidation: %s %q, want STALE 0", w.Header().Get("X-Cache"), w.Body.String())
			}
			// The refresh ran after the stale answer (same goroutine).
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "HIT" || w.Body.String() != "1" {
				t.Fatalf("after refresh: %s %q", w.Header().Get("X-Cache"), w.Body.String())
			}
			// Soft, then hard: the entry from before both is unusable.
			version.Add(1)
			if err := c.InvalidateTagsSoft(ctx, "item:1"); err != nil {
				t.Fatal(err)
			}
			if err := c.InvalidateTags(ctx, "item:1"); err != nil {
				t.Fatal(err)
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "MISS" || w.Body.String() != "2" {
				t.Fatalf("soft then hard: %s %q, want MISS 2", w.Header().Get("X-Cache"), w.Body.String())
			}
			// Two soft bumps: only the latest one's "before" is graced.
			version.Add(1)
			_ = c.InvalidateTagsSoft(ctx, "item:1")
			_ = c.InvalidateTagsSoft(ctx, "item:1")
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("two soft bumps: %s", w.Header().Get("X-Cache"))
			}
			// Soft region invalidation.
			version.Add(1)
			if err := c.InvalidateRegionSoft(ctx, "r"); err != nil {
				t.Fatal(err)
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "STALE" {
				t.Fatalf("soft region: %s", w.Header().Get("X-Cache"))
			}
		})
	}
}

// Without SoftInvalidation, a soft invalidation is a hard one.
func TestSoftInvalidationOffIsHard(t *testing.T) {
	c := newBackendCache(t, "", core.RegionConfig{})
	rt, _ := c.Route("r", core.Tags("t"))
	n := 0
	h := func(w http.ResponseWriter, r *http.Request) { n++; fmt.Fprint(w, n) }
	serveOnce(rt, "/x", noParams, h)
	if err := c.InvalidateTagsSoft(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	if w := serveOnce(rt, "/x", noParams, h); w.Header().Get("X-Cache") != "MISS" || w.Body.String() != "2" {
		t.Fatalf("got %s %q", w.Header().Get("X-Cache"), w.Body.String())
	}
	// Declarative Soft() on an invalidating route.
	iv, err := c.Invalidator(core.Tags("t"), core.Soft())
	if err != nil || !core.IsSoft(iv) {
		t.Fatal(err)
	}
	if _, ok := any(core.Soft()).(core.RouteOption); ok {
		t.Fatal("Soft is an option of cached routes")
	}
}

func TestSoftPurge(t *testing.T) {
	c := newBackendCache(t, "", core.RegionConfig{SoftInvalidation: true})
	rt, _ := c.Route("r", core.Tags("t"))
	n := 0
	h := func(w http.ResponseWriter, r *http.Request) { n++; fmt.Fprint(w, n) }
	serveOnce(rt, "/x", noParams, h)
	ph, _ := c.PurgeHandler(core.PurgeConfig{Token: "k"})
	req := httptest.NewRequest("PURGE", "/_cache/purge", nil)
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Surrogate-Key", "t")
	req.Header.Set("Soft-Purge", "1")
	pw := httptest.NewRecorder()
	ph.ServeHTTP(pw, req)
	if pw.Code != 200 {
		t.Fatal(pw.Body.String())
	}
	if w := serveOnce(rt, "/x", noParams, h); w.Header().Get("X-Cache") != "STALE" || w.Body.String() != "1" {
		t.Fatalf("soft purge: %s %q", w.Header().Get("X-Cache"), w.Body.String())
	}
}
