package core

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	mcbe "github.com/routecache/routecache/core/backend/memcache"
	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// Session 10 review: the coherence promises under faults a remote store
// really has — counters that expire or are evicted — on the test servers
// (ROUTECACHE_TEST_REDIS, ROUTECACHE_TEST_MEMCACHE). Each test states the
// promise it guards and the fault it injects.

// s10Backends are the remote backends the tests run on: a plain Redis and
// a Memcached (the cluster behaves as Redis here: one counter, one slot).
func s10Backends(t *testing.T) map[string]string {
	return map[string]string{
		"redis":    "redis://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s",
		"memcache": "memcache://" + strings.Split(backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE"), ",")[0] + "?timeout=5s",
	}
}

// s10Evict deletes a counter from the region's store, as an eviction
// (maxmemory, memcached's LRU) or its expiry would.
func s10Evict(t *testing.T, r *Region, name string) {
	t.Helper()
	switch be := r.be.(type) {
	case *redisbe.Backend:
		if err := be.Client().Del(context.Background(), name).Err(); err != nil {
			t.Fatal(err)
		}
	case *mcbe.Backend:
		if err := be.Client().Delete(name); err != nil && !strings.Contains(err.Error(), "cache miss") {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no eviction for %T", r.be)
	}
}

// s10Serve serves GET /items/1 on rt with handler h.
func s10Serve(t *testing.T, rt *Route, h func(w http.ResponseWriter, r *http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	err := rt.handle(w, httptest.NewRequest("GET", "/items/1", nil), mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Promise: no request that starts after InvalidateTags returned nil is
// answered with a response whose handler started before it — here for a
// tag the handler added at run time (AddTags) during a refresh (an early
// refresh; stale-while-revalidate and soft invalidation refresh the same
// way).
//
// Fault: the tag epoch counter is missing when the refresh reads it (it
// expires one counter lifetime after the last tag invalidation: entries
// do not record it, so no store renews it), and the epoch the
// invalidation re-creates is evicted before the refresh reads it again.
// The refresh read the epoch without creating it (0), read the runtime
// tag's counter after its bump, found the epoch missing again (0 == 0),
// and stored the old response under the tag's new value: a HIT of the
// old response after the invalidation had returned.
func TestRefreshWithRuntimeTagsAcrossALostEpochIsNotServed(t *testing.T) {
	for name, url := range s10Backends(t) {
		t.Run(name, func(t *testing.T) {
			c, err := New(Config{Regions: map[string]RegionConfig{"r": {
				Backend: url, Prefix: fmt.Sprintf("s10e%d", backend.FreshCounter()%1e12),
				TTL: time.Hour, EarlyRefresh: 1e12, // every hit refreshes
			}}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			r := c.regions["r"]
			rt, err := c.Route("r")
			if err != nil {
				t.Fatal(err)
			}
			var version, calls atomic.Int64
			version.Store(1)
			h := func(w http.ResponseWriter, req *http.Request) {
				v := version.Load() // the handler reads its data
				AddTags(req.Context(), "item")
				if calls.Add(1) == 2 { // the refresh
					// The data changes and its invalidation completes while
					// the refresh runs; then the epoch it re-created is
					// evicted.
					version.Store(2)
					if err := c.InvalidateTags(context.Background(), "item"); err != nil {
						t.Error(err)
					}
					s10Evict(t, r, r.epochCounter)
				}
				fmt.Fprintf(w, "v%d", v)
			}
			if w := s10Serve(t, rt, h); xcache(w) != "MISS" || w.Body.String() != "v1" {
				t.Fatalf("first request: %s %q, want MISS v1", xcache(w), w.Body.String())
			}
			// No tag invalidation for a counter lifetime: the epoch expired.
			s10Evict(t, r, r.epochCounter)
			if w := s10Serve(t, rt, h); xcache(w) != "HIT" || w.Body.String() != "v1" {
				t.Fatalf("second request: %s %q, want HIT v1 (then the refresh)", xcache(w), w.Body.String())
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("the handler ran %d times, want 2 (the fill and the refresh)", n)
			}
			// InvalidateTags returned before this request began.
			if w := s10Serve(t, rt, h); w.Body.String() == "v1" {
				t.Fatalf("after the invalidation: %s %q, the response from before it", xcache(w), w.Body.String())
			}
		})
	}
}

var _ = io.Discard
var _ redis.UniversalClient
