package memory

import (
	"context"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// heldEntry stores under key an entry whose snapshot is the counters'
// values now, and returns what the store holds for it.
func heldEntry(t *testing.T, m *Backend, key, entryKey string, names ...string) *Held {
	t.Helper()
	ctx := context.Background()
	vals := make([]uint64, len(names))
	_ = m.Counters(ctx, names, vals)
	snap := make([]backend.CounterSnap, len(names))
	for i, n := range names {
		snap[i] = backend.CounterSnap{Name: n, Value: vals[i]}
	}
	e := &backend.Entry{Status: 200, Key: entryKey, Counters: snap, FreshUntil: time.Now().Add(time.Hour).UnixNano()}
	e.StaleUntil = e.FreshUntil
	if err := m.Store(ctx, key, e, time.Hour); err != nil {
		t.Fatal(err)
	}
	h := m.Held(key)
	if h == nil || h.Entry() != e {
		t.Fatal("Held does not return what Store kept under that key")
	}
	if !m.HeldUnchanged(h) {
		t.Fatal("a fresh snapshot reads as changed")
	}
	return h
}

// HeldUnchanged reads the counters an entry's snapshot names as Unchanged
// does, whether they existed when it was stored or not: a bump of one
// that existed, the creation of one that did not (the first
// invalidation of a tag), each end it, and a counter created for another
// name leaves it unchanged (looked up by name then). An entry is OwnKey
// only under its own Key.
func TestHeldUnchangedSeesEveryBumpAndCreation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		bump  string // the counter moved after the store
		moved bool
	}{
		{"existing counter bumped", "old", true},
		{"missing counter created", "new", true},
		{"missing counter created, entry with none", "", true},
		{"other counter created", "other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := New(1 << 20)
			names := []string{"old", "new"}
			if tc.bump != "" {
				_ = m.Bump(ctx, "old")
			} else {
				names = []string{"new"} // no counter of the entry exists: no ctrs
			}
			h := heldEntry(t, m, "k", "k", names...)
			if tc.bump == "" {
				if h.refs != nil {
					t.Fatal("counters resolved where none existed")
				}
				tc.bump = "new"
			}
			_ = m.Bump(ctx, tc.bump)
			if got := m.HeldUnchanged(h); got == tc.moved {
				t.Fatalf("after bumping %q: HeldUnchanged %v", tc.bump, got)
			}
			if got := m.Unchanged(h.Entry().Counters); got == tc.moved {
				t.Fatalf("Unchanged %v, unlike HeldUnchanged", got)
			}
			// Stored again now, the entry resolves the counter created.
			h2 := heldEntry(t, m, "k", "k", names...)
			_ = m.Bump(ctx, "new")
			if m.HeldUnchanged(h2) {
				t.Fatal("a bump of a counter resolved at the store not seen")
			}
		})
	}
	m, _ := New(1 << 20)
	if h := heldEntry(t, m, "k", "k"); !h.OwnKey() {
		t.Fatal("an entry under its own key not OwnKey")
	}
	if h := heldEntry(t, m, "k2", "k"); h.OwnKey() {
		t.Fatal("an entry under another key than its Key is OwnKey")
	}
	_ = m.Bump(ctx, "y")
	for _, snap := range [][]backend.CounterSnap{
		{{Name: "x", Value: 0}},                            // 0, no counter
		{{Name: "y", Value: 0}},                            // 0, a counter
		{{Name: "x", Value: backend.BaseCounter + 1}},      // no counter, not BaseCounter
		{{Name: "x", Value: 1}, {Name: "y", Value: 12345}}, // a counter moved
	} {
		if err := m.Store(ctx, "z", &backend.Entry{Key: "z", Counters: snap}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if m.HeldUnchanged(m.Held("z")) {
			t.Fatalf("snapshot %v read as unchanged", snap)
		}
	}
}

// A counter created while an entry is stored (its first invalidation
// racing a fill) is seen by the Held once the creation returned: the
// snapshot read before it (BaseCounter) reads as changed, one read after
// it as unchanged. Run with -race.
func TestHeldSeesACounterCreatedDuringTheStore(t *testing.T) {
	ctx := context.Background()
	for i := 0; i < 2000; i++ {
		m, _ := New(1 << 20)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = m.Bump(ctx, "tag")
		}()
		vals := make([]uint64, 1)
		_ = m.Counters(ctx, []string{"tag"}, vals)
		e := &backend.Entry{Status: 200, Key: "k", Counters: []backend.CounterSnap{{Name: "tag", Value: vals[0]}}}
		if err := m.Store(ctx, "k", e, time.Hour); err != nil {
			t.Fatal(err)
		}
		<-done
		if got, want := m.HeldUnchanged(m.Held("k")), vals[0] != backend.BaseCounter; got != want {
			t.Fatalf("round %d: snapshot %d, HeldUnchanged %v after the creation returned", i, vals[0], got)
		}
	}
}

// StoreHeld stores as Store does and returns what the store holds for the
// entry (Held's answer for its key), whose HeldUnchanged sees a counter
// bumped or created after the store: the check a fill makes after
// storing. An entry the budget cannot hold is refused, with nothing
// returned.
func TestStoreHeldReturnsTheHeldAndSeesLaterMoves(t *testing.T) {
	ctx := context.Background()
	for _, bump := range []string{"old", "new", ""} {
		m, _ := New(1 << 20)
		_ = m.Bump(ctx, "old")
		names := []string{"old", "new"}
		vals := make([]uint64, len(names))
		_ = m.Counters(ctx, names, vals)
		e := &backend.Entry{Status: 200, Key: "k", Counters: []backend.CounterSnap{{Name: "old", Value: vals[0]}, {Name: "new", Value: vals[1]}}}
		h, err := m.StoreHeld("k", e)
		if err != nil || h == nil || h != m.Held("k") || h.Entry() != e {
			t.Fatalf("StoreHeld = %p, %v; Held(k) = %p", h, err, m.Held("k"))
		}
		if !m.HeldUnchanged(h) {
			t.Fatal("unchanged snapshot reads as changed")
		}
		if bump == "" {
			continue
		}
		_ = m.Bump(ctx, bump)
		if m.HeldUnchanged(h) {
			t.Fatalf("counter %q moved after the store: HeldUnchanged still true", bump)
		}
	}
	m, _ := New(100)
	if h, err := m.StoreHeld("k", &backend.Entry{Status: 200, Key: "k", Body: make([]byte, 1000)}); h != nil || err != backend.ErrTooLarge {
		t.Fatalf("too large: %p, %v", h, err)
	}
}

// Counter reads one counter as Counters does: BaseCounter while it was
// never created, then its value, bumps included.
func TestCounterIsCountersOfOneName(t *testing.T) {
	ctx := context.Background()
	m, _ := New(1 << 20)
	vals := make([]uint64, 1)
	for i, step := range []string{"missing", "created", "bumped"} {
		if i > 0 {
			_ = m.Bump(ctx, "c")
		}
		_ = m.Counters(ctx, []string{"c"}, vals)
		if got := m.Counter("c"); got != vals[0] || i == 0 && got != backend.BaseCounter {
			t.Fatalf("%s: Counter %d, Counters %d", step, got, vals[0])
		}
	}
}
