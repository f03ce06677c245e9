package near

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	_ "github.com/routecache/routecache/core/backend/redis"
)

// The l1Entry is charged what it takes on the heap.
func TestL1EntryCost(t *testing.T) {
	// Each in its size class: 144 and 80 bytes.
	e, s := int64(unsafe.Sizeof(l1Entry{})), int64(unsafe.Sizeof(l1Snap{}))
	if e > 144 || e <= 128 || s > 80 || s <= 64 || l1EntryCost != 144+80 {
		t.Fatalf("l1Entry is %d bytes and l1Snap %d, charged %d", e, s, l1EntryCost)
	}
}

// A near hit reads its local counters through the refs its L1 entry keeps
// (no hashing of their names), and they never hide an invalidation: after
// a Bump, a loss of the subscription (every local counter dropped) or a
// lookup naming other counters in the same positions, the values a Load
// returns are the counters' values now, read from Redis or from the local
// copies that are current.
func TestNearHitRefsFollowInvalidations(t *testing.T) {
	raw := "redis://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s"
	inner, err := backend.Open(raw, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw + "&near_max_bytes=4MiB")
	if err != nil {
		t.Fatal(err)
	}
	be, err := Wrap(inner, u, u.Query(), backend.Options{})
	if err != nil {
		inner.Close()
		t.Fatal(err)
	}
	n := be.(*Cache)
	t.Cleanup(func() { n.Close() })
	if !n.Stats().Coherent {
		t.Skip("the pub/sub subscription is not up")
	}
	ctx := context.Background()
	prefix := "nearref" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "") + ":"
	names := []string{prefix + "v:r:r", prefix + "v:k:/a", prefix + "v:t:x", prefix + "v:t:y"}
	now := time.Now().UnixNano()
	e := &backend.Entry{
		Status: 200, Header: http.Header{}, Body: []byte("body"),
		Created: now, FreshUntil: now + int64(time.Hour), StaleUntil: now + int64(time.Hour), SWRUntil: now + int64(time.Hour),
		Key: prefix + "/a",
	}
	e.Prepare()
	want := make([]uint64, len(names))
	if err := n.Ensure(ctx, names, want); err != nil {
		t.Fatal(err)
	}
	key := prefix + "/a"
	if err := n.Store(ctx, key, e, time.Hour); err != nil {
		t.Fatal(err)
	}
	n.Remember(names, want)

	// load looks key up with names and checks the values against want and
	// whether it was answered locally.
	load := func(step string, want []uint64Named, local bool) {
		t.Helper()
		ns := make([]string, len(want))
		for i, x := range want {
			ns[i] = x.name
		}
		before := n.Stats()
		vals := make([]uint64, len(ns))
		got, err := n.Load(ctx, key, ns, vals)
		if err != nil || got == nil {
			t.Fatalf("%s: Load = %v, %v", step, got, err)
		}
		for i := range vals {
			if vals[i] != want[i].v {
				t.Fatalf("%s: %s = %d, want %d", step, ns[i], vals[i], want[i].v)
			}
		}
		after := n.Stats()
		if isLocal := after.LocalHits > before.LocalHits; isLocal != local {
			t.Fatalf("%s: answered locally %v, want %v (%+v then %+v)", step, isLocal, local, before, after)
		}
	}
	cur := func(ns ...string) []uint64Named {
		vals := make([]uint64, len(ns))
		if err := inner.Counters(ctx, ns, vals); err != nil {
			t.Fatal(err)
		}
		out := make([]uint64Named, len(ns))
		for i := range ns {
			out[i] = uint64Named{ns[i], vals[i]}
		}
		return out
	}

	load("first hit", cur(names...), true)
	l1, ok := n.l1.Load(key)
	if !ok {
		t.Fatal("entry not in the L1")
	}
	for i := range names {
		if !l1.ref[i].Remembers() {
			t.Fatalf("no ref kept for %s", names[i])
		}
	}
	load("second hit", cur(names...), true)

	// An invalidation of one counter: its local copy is gone, so the next
	// Load reads Redis and sees the new value. (The message the Bump
	// publishes drops the counter again when it comes back: wait for it,
	// so that it does not fall among the loads below.)
	applied := make(chan string, 64)
	n.OnApplied(func(counter string) {
		if strings.HasPrefix(counter, prefix) {
			applied <- counter
		}
	})
	if err := n.Bump(ctx, names[2]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-applied:
	case <-time.After(30 * time.Second): // a bound for a loaded machine
		t.Fatal("the Bump's message did not come back")
	}
	load("after Bump", cur(names...), false)
	load("hit after the re-read", cur(names...), true)

	// The same key looked up with the tags the other way round: the refs
	// of positions 2 and 3 name the other counters, and are not used.
	swapped := []string{names[0], names[1], names[3], names[2]}
	load("swapped names", cur(swapped...), true)
	load("swapped back", cur(names...), true)

	// Every local counter dropped (the subscription was lost and is back,
	// or Redis restarted): nothing is answered locally until re-read.
	n.dropAll()
	load("after dropAll", cur(names...), false)
	load("hit after dropAll", cur(names...), true)
}

type uint64Named struct {
	name string
	v    uint64
}
