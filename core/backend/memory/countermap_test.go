package memory

import (
	"fmt"
	"hash/maphash"
	"sync"
	"testing"
)

// TestCounterMapChains checks the memory counters' lookup by hash: a name
// is found only under its own name even when another name shares its
// hash, and creating a counter keeps the others it chains with.
func TestCounterMapChains(t *testing.T) {
	c := &counterMap{seed: maphash.MakeSeed()}
	a, created := c.getOrCreate("tag:a", func() uint64 { return 7 })
	if !created || a.Load() != 7 {
		t.Fatalf("created %v value %d", created, a.Load())
	}
	// Plant a foreign name under tag:a's hash, as a collision would.
	h := maphash.String(c.seed, "tag:a")
	s := &c.shards[h&63]
	m := map[uint64]*namedCounter{}
	for k, v := range *s.m.Load() {
		m[k] = v
	}
	other := &namedCounter{name: "tag:zz", next: m[h]}
	other.v.Store(99)
	m[h] = other
	s.m.Store(&m)
	if got := c.get("tag:a"); got != a {
		t.Fatalf("tag:a behind a colliding name: got %p want %p", got, a)
	}
	if got := c.get("tag:zz"); got != nil {
		t.Fatalf("tag:zz hashes elsewhere, found %v", got.Load())
	}
	if got := c.get("tag:b"); got != nil {
		t.Fatal("tag:b found before it was created")
	}
	if v, created := c.getOrCreate("tag:a", func() uint64 { return 1 }); created || v != a {
		t.Fatal("tag:a created twice")
	}

	// Concurrent creation: every name is created exactly once and all
	// readers agree on its counter.
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				name := fmt.Sprintf("k:%d", i)
				_, created := c.getOrCreate(name, func() uint64 { return 3 })
				mu.Lock()
				if created {
					got[name]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("k:%d", i)
		if got[name] != 1 {
			t.Fatalf("%s created %d times", name, got[name])
		}
		if v := c.get(name); v == nil || v.Load() != 3 {
			t.Fatalf("%s not readable after creation", name)
		}
	}
	if c.get("tag:a") != a {
		t.Fatal("tag:a lost while other counters were created")
	}
}

// TestCounterMapFilter checks the one-sided filter: every created counter
// passes it, and a map with no counters lets nothing through.
func TestCounterMapFilter(t *testing.T) {
	c := &counterMap{seed: maphash.MakeSeed()}
	for i := 0; i < 100; i++ {
		if c.mayExist(fmt.Sprintf("p:v:k:r:/articles/%d", i)) {
			t.Fatal("empty map: filter let a name through")
		}
	}
	for i := 0; i < 5000; i++ {
		name := fmt.Sprintf("p:v:t:article:%d", i)
		c.getOrCreate(name, func() uint64 { return 5 })
		if !c.mayExist(name) || c.get(name) == nil {
			t.Fatalf("%s created but filtered out", name)
		}
	}
}
