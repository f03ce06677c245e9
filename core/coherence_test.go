package core_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/redis/go-redis/v9"
)

// An invalidation made by a Cache without a near cache (a worker, an admin
// tool) reaches the near caches on the same Redis and prefix: the plain
// backend publishes on the near caches' channel, in the same round trip as
// the increment. Hard and soft, tag, key and region, standalone and
// cluster.
func TestPlainRedisInvalidationReachesNearReplicas(t *testing.T) {
	for name, base := range redisURLs(t) {
		t.Run(name, func(t *testing.T) {
			rc := core.RegionConfig{Prefix: uniquePrefix(t), SoftInvalidation: true}
			near := instances(t, 1, withQuery(base, "near_max_bytes=4MiB&timeout=2s"), rc)[0]
			plain := instances(t, 1, withQuery(base, "timeout=2s"), rc)[0]
			nb := nearOf(near)
			var version atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
			rt, err := near.Route("r", core.Tags("item:{id}"))
			if err != nil {
				t.Fatal(err)
			}
			p := mapParams{"id": "1"}
			ctx := context.Background()
			cases := []struct {
				name string
				soft bool
				inv  func() error
			}{
				{"tag", false, func() error { return plain.InvalidateTags(ctx, "item:1") }},
				{"key", false, func() error { return plain.InvalidateKey(ctx, "r", "/items/1") }},
				{"region", false, func() error { return plain.InvalidateRegion(ctx, "r") }},
				{"soft-tag", true, func() error { return plain.InvalidateTagsSoft(ctx, "item:1") }},
				{"soft-region", true, func() error { return plain.InvalidateRegionSoft(ctx, "r") }},
			}
			for _, tc := range cases {
				// The near replica holds the current entry and its counters.
				waitFor(t, tc.name+": a local hit on the near replica", func() bool {
					before := nb.Stats().LocalHits
					w := serveOnce(rt, "/items/1", p, h)
					return w.Header().Get("X-Cache") == "HIT" && w.Body.String() == fmt.Sprint(version.Load()) && nb.Stats().LocalHits > before
				})
				old := version.Load()
				version.Add(1)
				arrived := expectMessage(t, nb, underPrefix(rc.Prefix))
				if err := tc.inv(); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				arrived()
				w := serveOnce(rt, "/items/1", p, h)
				got, xc := w.Body.String(), w.Header().Get("X-Cache")
				switch {
				case !tc.soft && got != fmt.Sprint(version.Load()):
					t.Fatalf("%s: near replica served %q (%s) after a plain instance's invalidation, want %d", tc.name, got, xc, version.Load())
				case tc.soft && (xc != "STALE" || got != fmt.Sprint(old)):
					t.Fatalf("%s: near replica answered %q (%s) after a soft invalidation, want the old entry as STALE", tc.name, got, xc)
				}
			}
		})
	}
}

// A hard invalidation on a plain Redis backend is one round trip: the
// increment, the expiry and the PUBLISH go together.
func TestPlainRedisInvalidationIsOneRoundTrip(t *testing.T) {
	for name, base := range redisURLs(t) {
		t.Run(name, func(t *testing.T) {
			c := newBackendCache(t, withQuery(base, "timeout=2s"), core.RegionConfig{})
			rb := core.RegionBackend(c, "r").(*redisbe.Backend)
			ctx := context.Background()
			const n = 5
			// The first call on a node loads the script (NOSCRIPT, then
			// EVAL): warm the nodes of the keys used below.
			for i := 0; i < n; i++ {
				if err := c.InvalidateKey(ctx, "r", fmt.Sprintf("/k%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			// The messages about this Cache's counters, seen by a
			// subscriber of its own (the server's PUBLISH count would
			// include other tests' invalidations on the same server).
			prefix := core.RegionPrefix(c, "r") + ":"
			sub := rb.Client().Subscribe(ctx, redisbe.InvalidationChannel)
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			hook := &countingHook{}
			rb.Client().AddHook(hook)
			for i := 0; i < n; i++ {
				if err := c.InvalidateKey(ctx, "r", fmt.Sprintf("/k%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if got := hook.trips.Load(); got != n {
				t.Fatalf("%d round trips for %d invalidations", got, n)
			}
			ours := 0
			for ours < n {
				msg, err := sub.ReceiveTimeout(ctx, 30*time.Second) // a bound for a loaded machine
				if err != nil {
					t.Fatalf("after %d of %d messages: %v", ours, n, err)
				}
				if m, ok := msg.(*redis.Message); ok && strings.Contains(m.Payload, "|"+prefix) {
					ours++
				}
			}
		})
	}
}
