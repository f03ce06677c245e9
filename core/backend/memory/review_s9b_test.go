package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Session 9 review: HeldUnchanged against Unchanged, the reference.

// Random snapshots (values read now, read earlier, made up: 0,
// BaseCounter, another), stored, then random bumps and creations of
// counters, named in the snapshots or not: after every step,
// HeldUnchanged of every entry equals Unchanged of its snapshot.
func TestReviewS9bHeldUnchangedIsUnchanged(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 2))
	for round := 0; round < 200; round++ {
		m, _ := New(1 << 22)
		names := make([]string, 8)
		for i := range names {
			names[i] = fmt.Sprintf("r%d:tag:%d", round, i)
		}
		for i := 0; i < rng.IntN(4); i++ {
			_ = m.Bump(ctx, names[rng.IntN(len(names))])
		}
		var keys []string
		for k := 0; k < 12; k++ {
			n := rng.IntN(4)
			snap := make([]backend.CounterSnap, n)
			for i := range snap {
				name := names[rng.IntN(len(names))]
				vals := []uint64{0}
				_ = m.Counters(ctx, []string{name}, vals)
				switch rng.IntN(6) {
				case 0:
					vals[0] = 0
				case 1:
					vals[0] = backend.BaseCounter
				case 2:
					vals[0]++
				}
				snap[i] = backend.CounterSnap{Name: name, Value: vals[0]}
			}
			key := fmt.Sprintf("k%d", k)
			ek := key
			if rng.IntN(3) == 0 {
				ek = "other"
			}
			if err := m.Store(ctx, key, &backend.Entry{Status: 200, Key: ek, Counters: snap}, time.Hour); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, key)
			for step := 0; step < 3; step++ {
				for _, key := range keys {
					h := m.Held(key)
					if got, want := m.HeldUnchanged(h), m.Unchanged(h.Entry().Counters); got != want {
						t.Fatalf("round %d %s %v: HeldUnchanged %v, Unchanged %v", round, key, h.Entry().Counters, got, want)
					}
					if h.OwnKey() != (h.Entry().Key == key) {
						t.Fatalf("OwnKey %v for key %q, Key %q", h.OwnKey(), key, h.Entry().Key)
					}
				}
				if rng.IntN(2) == 0 {
					_ = m.Bump(ctx, names[rng.IntN(len(names))])
				} else {
					_ = m.SoftBump(ctx, names[rng.IntN(len(names))])
				}
			}
		}
	}
}

// Stores racing the creation of the counters their snapshots name (each
// snapshot read before its creation: BaseCounter), on many names at
// once: once every creation returned, no entry reads as unchanged. Run
// with -race.
func TestReviewS9bHeldRacingCreations(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 300; round++ {
		m, _ := New(1 << 22)
		const n = 16
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("tag:%d", i)
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				_ = m.Bump(ctx, name)
			}()
			go func(i int) {
				defer wg.Done()
				<-start
				snap := []backend.CounterSnap{{Name: name, Value: backend.BaseCounter}}
				key := fmt.Sprintf("k%d", i)
				_ = m.Store(ctx, key, &backend.Entry{Status: 200, Key: key, Counters: snap}, time.Hour)
			}(i)
		}
		close(start)
		wg.Wait()
		for i := 0; i < n; i++ {
			if h := m.Held(fmt.Sprintf("k%d", i)); m.HeldUnchanged(h) {
				t.Fatalf("round %d: entry %d reads unchanged after its counter was created", round, i)
			}
		}
	}
}

// The budget charges a Held's resolution: an entry resolving more
// counters costs more, and a store full of them stays within its
// budget, whether the key is the entry's own (kept) or not (copied).
func TestReviewS9bHeldCharged(t *testing.T) {
	ctx := context.Background()
	for _, own := range []bool{true, false} {
		const budget = 64 << 10
		m, _ := New(budget)
		names := make([]string, 20)
		for i := range names {
			names[i] = fmt.Sprintf("tag:%d", i)
			_ = m.Bump(ctx, names[i])
		}
		vals := make([]uint64, len(names))
		_ = m.Counters(ctx, names, vals)
		snap := make([]backend.CounterSnap, len(names))
		for i := range snap {
			snap[i] = backend.CounterSnap{Name: names[i], Value: vals[i]}
		}
		for i := 0; i < 2000; i++ {
			key := fmt.Sprintf("key:%06d", i)
			ek := key
			if !own {
				ek = "canonical:" + key
			}
			e := &backend.Entry{Status: 200, Key: ek, Counters: snap, Body: make([]byte, 100)}
			e.Prepare()
			if err := m.Store(ctx, key, e, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		var held int64
		n := 0
		for i := 0; i < 2000; i++ {
			if h := m.Held(fmt.Sprintf("key:%06d", i)); h != nil {
				held += h.Entry().MemSize() + int64(len("key:000000")) + heldBytes + 16*int64(len(names))
				if len(h.refs) != len(names) {
					t.Fatalf("resolved %d counters, want %d", len(h.refs), len(names))
				}
				n++
			}
		}
		if n == 0 || n == 2000 || held > budget {
			t.Fatalf("own key %v: %d entries held, charged %d of a %d budget", own, n, held, budget)
		}
	}
}
