package near_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/core/backend/near"
	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// openNear opens a near cache on raw (a backend URL with a query) whose
// OnRemote sends to remote (when not nil) the events about counters under
// prefix (the server also carries other tests' invalidations).
func openNear(t *testing.T, raw, prefix string, remote chan<- backend.Event) *near.Cache {
	t.Helper()
	opts := backend.Options{}
	if remote != nil {
		opts.OnRemote = func(ev backend.Event) {
			if strings.HasPrefix(ev.Counter, prefix) {
				remote <- ev
			}
		}
	}
	inner, err := backend.Open(raw, opts)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw + "&near_max_bytes=4MiB")
	if err != nil {
		t.Fatal(err)
	}
	be, err := near.Wrap(inner, u, u.Query(), opts)
	if err != nil {
		inner.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be.(*near.Cache)
}

// applied arms n to signal each counter under prefix a message dropped.
func applied(n *near.Cache, prefix string) <-chan string {
	ch := make(chan string, 64)
	n.OnApplied(func(counter string) {
		if strings.HasPrefix(counter, prefix) {
			ch <- counter
		}
	})
	return ch
}

// testPrefix is a counter prefix of this test's own.
func testPrefix() string {
	return "nearev" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "") + ":"
}

// awaitCounter waits for counter on ch (other tests' messages pass by).
func awaitCounter(t *testing.T, ch <-chan string, counter string) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a bound for a loaded machine
	for {
		select {
		case c := <-ch:
			if c == counter {
				return
			}
		case <-deadline:
			t.Fatalf("no message about %q reached the near cache", counter)
		}
	}
}

// awaitEvent waits for the event about want.Counter on ch and checks it.
func awaitEvent(t *testing.T, ch <-chan backend.Event, want backend.Event) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Counter != want.Counter {
				continue // another test's
			}
			if ev != want {
				t.Fatalf("remote event %+v, want %+v", ev, want)
			}
			return
		case <-deadline:
			t.Fatalf("no remote event about %q", want.Counter)
		}
	}
}

// A bump made through BumpEvent on one near cache reaches another's
// OnRemote with what it was (whatever bytes the names hold, with a
// hashed counter name), drops the other's local copy of the counter, and
// is not reported back to the instance that made it. A message of the
// previous format still drops the counter and is delivered as an
// EventCounter.
func TestRemoteEvents(t *testing.T) {
	for _, tc := range []struct{ name, env, scheme, path string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://", "/0"},
		{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.scheme + backendtest.Server(t, tc.env) + tc.path + "?timeout=5s"
			prefix := testPrefix()
			remoteA := make(chan backend.Event, 64)
			remoteB := make(chan backend.Event, 64)
			a := openNear(t, raw, prefix, remoteA)
			b := openNear(t, raw, prefix, remoteB)
			appliedA, appliedB := applied(a, prefix), applied(b, prefix)
			ctx := context.Background()
			for _, ev := range []backend.Event{
				{Counter: prefix + "v:h:0001", Kind: backend.EventTag, Name: "t\x00\xff|/%" + strings.Repeat("x", 300)},
				{Counter: prefix + "v:t:soft", Kind: backend.EventTag, Name: "soft", Soft: true},
				{Counter: prefix + "v:h:0002", Kind: backend.EventKey, Region: "r", Name: strings.Repeat("/k", 200)},
				{Counter: prefix + "v:r:r", Kind: backend.EventRegion, Region: "r", Soft: true},
			} {
				vals := []uint64{0}
				if err := b.Ensure(ctx, []string{ev.Counter}, vals); err != nil {
					t.Fatal(err)
				}
				b.Remember([]string{ev.Counter}, vals)
				if !b.HasLocal(ev.Counter) {
					t.Fatal("B keeps no local copy of the counter")
				}
				if err := a.BumpEvent(ctx, ev); err != nil {
					t.Fatal(err)
				}
				awaitEvent(t, remoteB, ev)
				if b.HasLocal(ev.Counter) {
					t.Fatalf("B still holds its copy of %q", ev.Counter)
				}
				// A applied its own message: had it reported it, the
				// event would be in remoteA by now (same goroutine).
				awaitCounter(t, appliedA, ev.Counter)
				for len(remoteA) > 0 {
					if got := <-remoteA; got.Counter == ev.Counter {
						t.Fatalf("A reported its own invalidation %+v", got)
					}
				}
			}
			// A publisher of the previous release sends the counter name
			// alone.
			old := prefix + "v:t:old"
			vals := []uint64{0}
			if err := b.Ensure(ctx, []string{old}, vals); err != nil {
				t.Fatal(err)
			}
			b.Remember([]string{old}, vals)
			if err := b.Client().Publish(ctx, redisbe.InvalidationChannel, "0ldinstance|"+old).Err(); err != nil {
				t.Fatal(err)
			}
			awaitCounter(t, appliedB, old)
			if b.HasLocal(old) {
				t.Fatal("a previous-format message left the counter local")
			}
			awaitEvent(t, remoteB, backend.Event{Counter: old})
		})
	}
}

// On Memcached (no pub/sub) BumpEvent is a bump like any other: the
// counter moves on, and nobody is told what it was.
func TestBumpEventMemcache(t *testing.T) {
	raw := "memcache://" + backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=5s"
	n := openNear(t, raw, "", nil)
	ctx := context.Background()
	name := testPrefix() + "v:t:x"
	for _, soft := range []bool{false, true} {
		vals := []uint64{0}
		if err := n.Ensure(ctx, []string{name}, vals); err != nil {
			t.Fatal(err)
		}
		before := vals[0]
		if err := n.BumpEvent(ctx, backend.Event{Counter: name, Kind: backend.EventTag, Name: "x", Soft: soft}); err != nil {
			t.Fatal(err)
		}
		if err := n.Counters(ctx, []string{name}, vals); err != nil || vals[0] == before {
			t.Fatalf("soft=%v: counter %d then %d (%v)", soft, before, vals[0], err)
		}
	}
}
