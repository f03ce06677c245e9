package near

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/internal/clockstore"
	"github.com/routecache/routecache/core/backend/memory"
)

// snapFixture is a near cache in pub/sub mode (as on Redis with the
// subscription live) in front of a memory store, which stands for the
// shared store: its Bump is another instance's invalidation reaching the
// store, the near cache's drop the message about it arriving. It holds an
// entry under key whose counters are names, with every counter bumped
// once (a memory counter then only moves up, by one a Bump).
type snapFixture struct {
	n     *Cache
	inner *memory.Backend
	key   string
	names []string
}

func newSnapFixture(t *testing.T) *snapFixture {
	t.Helper()
	inner, err := memory.New(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	n := &Cache{
		inner: inner, l1: clockstore.New[*l1Entry](1 << 20), maxBytes: 1 << 20,
		local: newLocalCounters(1 << 20), log: slog.Default(),
	}
	t.Cleanup(func() { n.l1.Clear(); inner.Close() })
	ctx := context.Background()
	f := &snapFixture{n: n, inner: inner, key: "/a", names: []string{"v:r:r", "v:k:/a", "v:t:x", "v:t:y"}}
	for _, name := range f.names {
		if err := inner.Bump(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	vals := make([]uint64, len(f.names))
	if err := n.Counters(ctx, f.names, vals); err != nil { // and keeps them locally
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	e := &backend.Entry{
		Status: 200, Header: http.Header{}, Body: []byte("body"), Key: f.key,
		Created: now, FreshUntil: now + int64(time.Hour), StaleUntil: now + int64(time.Hour), SWRUntil: now + int64(time.Hour),
	}
	for i, name := range f.names {
		e.Counters = append(e.Counters, backend.CounterSnap{Name: name, Value: vals[i]})
	}
	e.Prepare()
	if err := n.Store(ctx, f.key, e, time.Hour); err != nil {
		t.Fatal(err)
	}
	return f
}

// current is what the shared store holds for names.
func (f *snapFixture) current(t *testing.T, names []string) []uint64 {
	t.Helper()
	vals := make([]uint64, len(names))
	if err := f.inner.Counters(context.Background(), names, vals); err != nil {
		t.Fatal(err)
	}
	return vals
}

// A near hit keeps the counter values it read with its L1 entry, and the
// next hits return them without reading the local counters, but only
// while the local counters have not changed: after an invalidation (a
// Bump here, a message from another instance), a newer value read from the
// store before the message about it came, every local counter dropped, or
// a lookup naming other counters, a Load returns the counters' values as
// they are now.
func TestNearHitSnapshotFollowsChanges(t *testing.T) {
	f := newSnapFixture(t)
	n, ctx := f.n, context.Background()
	load := func(step string, names []string, local bool) {
		t.Helper()
		want := f.current(t, names)
		before := n.Stats()
		vals := make([]uint64, len(names))
		if e, err := n.Load(ctx, f.key, names, vals); err != nil || e == nil {
			t.Fatalf("%s: Load = %v, %v", step, e, err)
		}
		for i := range vals {
			if vals[i] != want[i] {
				t.Fatalf("%s: %s = %d, want %d", step, names[i], vals[i], want[i])
			}
		}
		if isLocal := n.Stats().LocalHits > before.LocalHits; isLocal != local {
			t.Fatalf("%s: answered locally %v, want %v", step, isLocal, local)
		}
	}
	snapped := func(step string) {
		t.Helper()
		le, ok := n.l1.Load(f.key)
		if !ok {
			t.Fatalf("%s: entry not in the L1", step)
		}
		if s := le.snap.Load(); s == nil || s.gen != n.gen.Load() || s.n != len(f.names) {
			t.Fatalf("%s: no snapshot of the current values kept (%+v)", step, s)
		}
	}

	load("first hit", f.names, true)
	snapped("first hit")
	load("hit from the snapshot", f.names, true)

	// An invalidation: the local copy is dropped, the next Load reads
	// the store, and the one after is local again.
	if err := n.Bump(ctx, f.names[2]); err != nil {
		t.Fatal(err)
	}
	load("after Bump", f.names, false)
	load("hit after the re-read", f.names, true)
	snapped("hit after the re-read")

	// Another instance's invalidation read from the store (by another
	// lookup) before its message came: the local copy moves on, and so
	// must the hits.
	if err := f.inner.Bump(ctx, f.names[1]); err != nil {
		t.Fatal(err)
	}
	if err := n.Counters(ctx, f.names[1:2], make([]uint64, 1)); err != nil {
		t.Fatal(err)
	}
	load("after a newer value was read", f.names, true)

	// Other counters in the same positions: not the snapshot's.
	swapped := []string{f.names[0], f.names[1], f.names[3], f.names[2]}
	load("swapped names", swapped, true)
	load("fewer names", f.names[:3], true)
	load("the entry's names again", f.names, true)

	n.dropAll()
	load("after dropAll", f.names, false)
	load("hit after dropAll", f.names, true)
}

// A counter changed while hits run concurrently is seen by every hit that
// starts after the change completed: the invalidation (store bumped, then
// local copy dropped, as when its message arrives), or a newer value read
// from the store before the message. Run with the race detector.
func TestNearHitSnapshotSeesConcurrentChanges(t *testing.T) {
	for _, mode := range []string{"drop", "newer-read"} {
		t.Run(mode, func(t *testing.T) {
			f := newSnapFixture(t)
			n, ctx := f.n, context.Background()
			const x = 2 // the counter that changes
			published := new(atomic.Uint64)
			published.Store(f.current(t, f.names)[x])
			done := make(chan struct{})
			var wg sync.WaitGroup
			var hits atomic.Uint64
			for r := 0; r < 2; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					vals := make([]uint64, len(f.names))
					for {
						select {
						case <-done:
							return
						default:
						}
						want := published.Load() // completed before this Load starts
						if e, err := n.Load(ctx, f.key, f.names, vals); err != nil || e == nil {
							t.Errorf("Load = %v, %v", e, err)
							return
						}
						if vals[x] < want {
							t.Errorf("a hit returned %s = %d after the change to %d completed", f.names[x], vals[x], want)
							return
						}
						hits.Add(1)
					}
				}()
			}
			for i := 0; i < 1000; i++ {
				if err := f.inner.Bump(ctx, f.names[x]); err != nil {
					t.Fatal(err)
				}
				v := make([]uint64, 1)
				switch mode {
				case "drop":
					n.drop(f.names[x])
					v = f.current(t, f.names[x:x+1])
				case "newer-read":
					if err := n.Counters(ctx, f.names[x:x+1], v); err != nil {
						t.Fatal(err)
					}
				}
				published.Store(v[0])
				// Let the readers hit between changes (and build
				// snapshots) on a machine with fewer cores than them.
				if i%16 == 0 {
					for h := hits.Load(); hits.Load() < h+4 && !t.Failed(); {
						time.Sleep(time.Millisecond)
					}
				}
			}
			close(done)
			wg.Wait()
			t.Logf("%d loads, %d answered locally", hits.Load(), n.Stats().LocalHits)
		})
	}
}

// Fresh returns the L1 entry only while the values the last hit read
// (l1Snap) are current and equal its own snapshot, and the local copies
// of its further counters equal it too: never after an invalidation dropped a counter, a newer
// value was read, or every local counter was dropped (a restart or a
// resubscription), and never in ttl mode (Memcached), which keeps no
// record.
func TestNearFreshOnlyWhileUnchangedSinceStored(t *testing.T) {
	f := newSnapFixture(t)
	n, ctx := f.n, context.Background()
	load := func(names []string) {
		t.Helper()
		if e, err := n.Load(ctx, f.key, names, make([]uint64, len(names))); err != nil || e == nil {
			t.Fatalf("Load = %v, %v", e, err)
		}
	}
	fresh := func(step string, want bool) {
		t.Helper()
		if got := n.Fresh(f.key, nil) != nil; got != want {
			t.Fatalf("%s: Fresh found the entry %v, want %v", step, got, want)
		}
	}
	fresh("stored, no hit yet", false)
	load(f.names)
	fresh("after a hit", true)
	fresh("again", true)
	if n.Fresh("/other", nil) != nil {
		t.Fatal("Fresh found an entry under another key")
	}

	// Fewer names (a lookup not naming the entry's runtime tags): the
	// counters past the record are compared as local holds them now.
	load(f.names[:3])
	fresh("a record of fewer counters, the rest unchanged", true)
	last := f.names[3:]
	if err := f.inner.Bump(ctx, last[0]); err != nil { // another instance's invalidation,
		t.Fatal(err)
	}
	if err := n.Counters(ctx, last, make([]uint64, 1)); err != nil { // read here before its message came
		t.Fatal(err)
	}
	load(f.names[:3]) // a current record of the first three
	fresh("a record of fewer counters, the last one changed", false)
	load(f.names)
	fresh("the entry's names, the last one changed", false)
	f = newSnapFixture(t)
	n = f.n
	load(f.names)
	fresh("the entry's names, a new fixture", true)

	// Every local counter dropped (OnReset, a resubscription).
	n.dropAll()
	fresh("after dropAll", false)
	load(f.names) // read remotely
	load(f.names) // local again: the record is rebuilt
	fresh("hit after dropAll", true)

	// Another instance's invalidation, its message arriving.
	if err := f.inner.Bump(ctx, f.names[1]); err != nil {
		t.Fatal(err)
	}
	n.drop(f.names[1])
	fresh("after the message", false)
	load(f.names)
	load(f.names) // a record of the new values, not the entry's
	if le, _ := n.l1.Load(f.key); le.snap.Load() == nil || le.snap.Load().gen != n.gen.Load() {
		t.Fatal("no current record after the re-read")
	}
	fresh("a record of values the entry does not hold", false)

	// A local invalidation.
	g := newSnapFixture(t)
	if _, err := g.n.Load(ctx, g.key, g.names, make([]uint64, len(g.names))); err != nil {
		t.Fatal(err)
	}
	if g.n.Fresh(g.key, nil) == nil {
		t.Fatal("no fast hit before the Bump")
	}
	if err := g.n.Bump(ctx, g.names[3]); err != nil {
		t.Fatal(err)
	}
	if g.n.Fresh(g.key, nil) != nil {
		t.Fatal("a fast hit after the Bump returned")
	}

	// ttl mode: local values age, no record is kept.
	h := newSnapFixture(t)
	h.n.staleness = time.Hour
	for range 2 {
		if _, err := h.n.Load(ctx, h.key, h.names, make([]uint64, len(h.names))); err != nil {
			t.Fatal(err)
		}
	}
	if h.n.Fresh(h.key, nil) != nil {
		t.Fatal("a near cache in ttl mode answered Fresh")
	}
}

// No Fresh that starts after an invalidation completed (the store
// bumped, then the local copy dropped) returns the entry, while hits run
// concurrently and rebuild their records. Run with the race detector.
func TestNearFreshSeesConcurrentInvalidation(t *testing.T) {
	f := newSnapFixture(t)
	n, ctx := f.n, context.Background()
	if _, err := n.Load(ctx, f.key, f.names, make([]uint64, len(f.names))); err != nil {
		t.Fatal(err)
	}
	if n.Fresh(f.key, nil) == nil {
		t.Fatal("no fast hit before the invalidation")
	}
	var invalidated atomic.Bool
	var fastHits atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]uint64, len(f.names))
			for {
				select {
				case <-done:
					return
				default:
				}
				after := invalidated.Load() // completed before this Fresh starts
				if n.Fresh(f.key, nil) != nil {
					if after {
						t.Errorf("Fresh returned the entry after the invalidation completed")
						return
					}
					fastHits.Add(1)
				}
				if _, err := n.Load(ctx, f.key, f.names, vals); err != nil {
					t.Errorf("Load: %v", err)
					return
				}
			}
		}()
	}
	// Let the readers hit from the record first.
	for fastHits.Load() < 8 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	if err := f.inner.Bump(ctx, f.names[2]); err != nil {
		t.Fatal(err)
	}
	n.drop(f.names[2])
	invalidated.Store(true)
	// Let the readers rebuild records of the new values.
	for h := n.Stats().LocalHits; n.Stats().LocalHits < h+100 && !t.Failed(); {
		time.Sleep(time.Millisecond)
	}
	close(done)
	wg.Wait()
}

// The L1 keeps an entry only under its own Key: one read from the remote
// store under a key whose remote form another key's entry holds (a
// collision of hashed remote keys) is returned to the lookup, which finds
// its Key is not the one it asked for, but never kept, so no hit answered
// from the key alone (Fresh) can serve it for the other key.
func TestL1KeepsOnlyEntriesUnderTheirOwnKey(t *testing.T) {
	f := newSnapFixture(t)
	n, ctx := f.n, context.Background()
	now := time.Now().UnixNano()
	other := &backend.Entry{
		Status: 200, Header: http.Header{}, Body: []byte("b's"), Key: "/b",
		Created: now, FreshUntil: now + int64(time.Hour), StaleUntil: now + int64(time.Hour), SWRUntil: now + int64(time.Hour),
	}
	other.Prepare()
	if err := f.inner.Store(ctx, backend.RemoteEntryKey("/c"), other, time.Hour); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e, err := n.Load(ctx, "/c", f.names, make([]uint64, len(f.names)))
		if err != nil || e == nil || e.Key != "/b" {
			t.Fatalf("Load(/c) = %v, %v: want the entry stored under its remote key", e, err)
		}
	}
	if _, ok := n.l1.Load("/c"); ok {
		t.Fatal("the L1 keeps /b's entry under /c")
	}
	if n.Fresh("/c", nil) != nil {
		t.Fatal("Fresh answered /c with /b's entry")
	}
}
