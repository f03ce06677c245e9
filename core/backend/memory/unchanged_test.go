package memory

import (
	"context"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Unchanged reads each counter of a snapshot as Counters does (a missing
// one is BaseCounter) and reports false once any of them moved, or reads
// 0; Entry returns what Store kept under that very key.
func TestUnchangedReadsCountersAsCountersDoes(t *testing.T) {
	ctx := context.Background()
	m, err := New(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Bump(ctx, "bumped"); err != nil {
		t.Fatal(err)
	}
	names := []string{"never", "bumped"}
	vals := make([]uint64, len(names))
	if err := m.Counters(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	snap := []backend.CounterSnap{{Name: "never", Value: vals[0]}, {Name: "bumped", Value: vals[1]}}
	if vals[0] != backend.BaseCounter || !m.Unchanged(snap) {
		t.Fatalf("fresh snapshot %v not unchanged", snap)
	}
	e := &backend.Entry{Status: 200, Key: "k", Counters: snap, FreshUntil: time.Now().Add(time.Hour).UnixNano()}
	e.StaleUntil = e.FreshUntil
	if err := m.Store(ctx, "k", e, time.Hour); err != nil {
		t.Fatal(err)
	}
	if m.Entry("k") != e || m.Entry("k2") != nil {
		t.Fatal("Entry does not return what Store kept under that key")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			m, _ := New(1 << 20)
			_ = m.Bump(ctx, "bumped")
			vals := make([]uint64, len(names))
			_ = m.Counters(ctx, names, vals)
			snap := []backend.CounterSnap{{Name: "never", Value: vals[0]}, {Name: "bumped", Value: vals[1]}}
			if err := m.Bump(ctx, name); err != nil {
				t.Fatal(err)
			}
			if m.Unchanged(snap) {
				t.Fatalf("bumping %q left the snapshot unchanged", name)
			}
		})
	}
	if m.Unchanged([]backend.CounterSnap{{Name: "never", Value: 0}}) {
		t.Fatal("a value of 0 read as unchanged")
	}
}
