package core_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// evServers are the Redis deployments the event tests run on.
var evServers = []struct{ name, env, scheme, path string }{
	{"redis", "ROUTECACHE_TEST_REDIS", "redis://", "/0"},
	{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://", ""},
}

var evSeq atomic.Uint64

// evPrefix is a key prefix of the test's own.
func evPrefix() string {
	return fmt.Sprintf("ev%d.%d", time.Now().UnixNano(), evSeq.Add(1))
}

// evSlot is the Redis Cluster slot of a key without hash tag (CRC16,
// XMODEM, modulo 16384).
func evSlot(key string) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// evCaches opens n Caches on one backend URL and prefix, as n replicas
// would, each with region "r".
func evCaches(t *testing.T, n int, url, prefix string) []*core.Cache {
	t.Helper()
	out := make([]*core.Cache, n)
	for i := range out {
		c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: prefix}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out
}

// evRemote collects the remote events c reports.
func evRemote(c *core.Cache) <-chan core.InvalidationEvent {
	ch := make(chan core.InvalidationEvent, 256)
	c.OnInvalidate(func(ev core.InvalidationEvent) {
		if ev.Remote {
			ch <- ev
		}
	})
	return ch
}

// evAwait receives n events from ch (bounded at 30 s, for a loaded
// machine: a bound, not an assertion on time).
func evAwait(t *testing.T, ch <-chan core.InvalidationEvent, n int) []core.InvalidationEvent {
	t.Helper()
	var got []core.InvalidationEvent
	deadline := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case ev := <-ch:
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("%d of %d remote events arrived: %+v", len(got), n, got)
		}
	}
	return got
}

// evSame compares events whatever their order.
func evSame(t *testing.T, got, want []core.InvalidationEvent) {
	t.Helper()
	key := func(evs []core.InvalidationEvent) []string {
		var s []string
		for _, ev := range evs {
			s = append(s, fmt.Sprintf("%+q", fmt.Sprintf("%+v", ev)))
		}
		slices.Sort(s)
		return s
	}
	if g, w := key(got), key(want); !slices.Equal(g, w) {
		t.Fatalf("remote events\n got %s\nwant %s", g, w)
	}
}

// Invalidations made on one instance reach another's OnInvalidate hooks
// with their kind, region, names and softness, also when the counter
// name is stored hashed (a long tag or key, a tag with non-printable
// bytes), which could not be read back from the name. (Region counters
// are never hashed: a Prefix and a region name hold at most 64 printable
// bytes each.)
func TestRemoteInvalidationEvents(t *testing.T) {
	longTag := "tag:" + strings.Repeat("x", 300)
	oddTag := "t\x00\x01\xff é|/%41 "
	longKey := "/articles/" + strings.Repeat("k", 300)
	for _, srv := range evServers {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.scheme + backendtest.Server(t, srv.env) + srv.path + "?timeout=5s&near_max_bytes=1MiB"
			cs := evCaches(t, 2, url, evPrefix())
			a, b := cs[0], cs[1]
			remote := evRemote(b)
			ownRemote := evRemote(a)
			ctx := context.Background()
			for _, err := range []error{
				a.InvalidateTags(ctx, longTag, oddTag, "plain"),
				a.InvalidateTagsSoft(ctx, "soft:"+oddTag),
				a.InvalidateKey(ctx, "r", longKey),
				a.InvalidateKey(ctx, "r", "/a|b c"),
				a.InvalidateRegion(ctx, "r"),
				a.InvalidateRegionSoft(ctx, "r"),
			} {
				if err != nil {
					t.Fatal(err)
				}
			}
			want := []core.InvalidationEvent{
				{Kind: core.InvalidationTag, Names: []string{longTag}, Remote: true},
				{Kind: core.InvalidationTag, Names: []string{oddTag}, Remote: true},
				{Kind: core.InvalidationTag, Names: []string{"plain"}, Remote: true},
				{Kind: core.InvalidationTag, Names: []string{"soft:" + oddTag}, Soft: true, Remote: true},
				{Kind: core.InvalidationKey, Region: "r", Names: []string{longKey}, Remote: true},
				{Kind: core.InvalidationKey, Region: "r", Names: []string{"/a|b c"}, Remote: true},
				{Kind: core.InvalidationRegion, Region: "r", Remote: true},
				{Kind: core.InvalidationRegion, Region: "r", Soft: true, Remote: true},
			}
			evSame(t, evAwait(t, remote, len(want)), want)
			if srv.name != "redis" {
				return // a cluster's nodes publish in no common order
			}
			// B's invalidation reaches A after A's own messages (one
			// server: in order), which A did not report.
			if err := b.InvalidateTags(ctx, "from-b"); err != nil {
				t.Fatal(err)
			}
			evSame(t, evAwait(t, ownRemote, 1), []core.InvalidationEvent{{Kind: core.InvalidationTag, Names: []string{"from-b"}, Remote: true}})
		})
	}
}

// evGet serves one GET of path through h and returns the body.
func evGet(h http.Handler, path string) string {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return string(body)
}

// A message of the previous format (the counter name alone, as a
// previous release publishes it) still makes a near cache drop its copy
// of the counter, so the invalidation holds there; it is not reported to
// the hooks (it does not say what it was).
func TestRemoteInvalidationPreviousFormat(t *testing.T) {
	for _, srv := range evServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := backendtest.Server(t, srv.env)
			url := srv.scheme + addr + srv.path + "?timeout=5s&near_max_bytes=1MiB"
			prefix := evPrefix()
			cs := evCaches(t, 2, url, prefix)
			a, b := cs[0], cs[1]
			remote := evRemote(b)
			var version atomic.Int64
			mw, err := b.Middleware("r", core.Tags("t"))
			if err != nil {
				t.Fatal(err)
			}
			h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }))
			evGet(h, "/x")
			version.Add(1)
			if got := evGet(h, "/x"); got != "0" {
				t.Fatalf("B served %q, want the cached 0", got)
			}
			// A publisher of the previous release: a Redis backend's Bump
			// publishes "<instance>|<counter>".
			old, err := backend.Open(srv.scheme+addr+srv.path+"?timeout=5s", backend.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			if err := old.Bump(context.Background(), prefix+":v:t:t"); err != nil { // docs/invalidation.md names the counters
				t.Fatal(err)
			}
			// A marker from this release, published after it from the same
			// node (its counter in the same cluster slot): once B reports
			// it, B has applied the old message.
			marker := "m"
			for i := 0; evSlot(prefix+":v:t:"+marker) != evSlot(prefix+":v:t:t"); i++ {
				marker = fmt.Sprint("m", i)
			}
			if err := a.InvalidateTags(context.Background(), marker); err != nil {
				t.Fatal(err)
			}
			evSame(t, evAwait(t, remote, 1), []core.InvalidationEvent{{Kind: core.InvalidationTag, Names: []string{marker}, Remote: true}})
			if got := evGet(h, "/x"); got != "1" {
				t.Fatalf("after the previous-format message B served %q, want 1", got)
			}
		})
	}
}
