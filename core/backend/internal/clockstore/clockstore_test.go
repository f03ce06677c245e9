package clockstore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadAfterSetAndReplace(t *testing.T) {
	m := New[int](1 << 20)
	if _, ok := m.Load("a"); ok {
		t.Fatal("empty map holds a")
	}
	m.Set("a", 1, 10, 0)
	if v, ok := m.Load("a"); !ok || v != 1 {
		t.Fatalf("Load(a) = %v, %v after Set", v, ok)
	}
	m.Set("a", 2, 20, 0)
	if v, ok := m.Load("a"); !ok || v != 2 {
		t.Fatalf("Load(a) = %v, %v after replacement", v, ok)
	}
	if m.Len() != 1 || m.Cost() != 20+ItemOverhead {
		t.Fatalf("after replacement: %d items costing %d", m.Len(), m.Cost())
	}
	m.Delete("a")
	if _, ok := m.Load("a"); ok || m.Len() != 0 || m.Cost() != 0 {
		t.Fatalf("after Delete: ok=%v, %d items costing %d", ok, m.Len(), m.Cost())
	}
}

// Many keys through one map: growth, tombstones and rebuilds keep every
// key that was set and not deleted.
func TestManyKeysDeletesAndRebuilds(t *testing.T) {
	m := New[int](1 << 40)
	for i := 0; i < 20000; i++ {
		m.Set(fmt.Sprint(i), i, 1, 0)
		if i%3 == 0 {
			m.Delete(fmt.Sprint(i / 2))
		}
	}
	deleted := map[int]bool{}
	for i := 0; i < 20000; i += 3 {
		deleted[i/2] = true
	}
	for i := 0; i < 20000; i++ {
		v, ok := m.Load(fmt.Sprint(i))
		if ok != !deleted[i] || (ok && v != i) {
			t.Fatalf("Load(%d) = %v, %v; deleted %v", i, v, ok, deleted[i])
		}
	}
	if m.Len() != 20000-len(deleted) {
		t.Fatalf("Len %d, want %d", m.Len(), 20000-len(deleted))
	}
	m.Clear()
	if _, ok := m.Load("1"); ok || m.Len() != 0 || m.Cost() != 0 {
		t.Fatal("Clear left items")
	}
}

func TestBudgetBound(t *testing.T) {
	const budget = 100 * (100 + ItemOverhead)
	m := New[int](budget)
	for i := 0; i < 10000; i++ {
		if !m.Set(fmt.Sprint(i), i, 100, 0) {
			t.Fatal("Set refused an item within budget")
		}
		if m.Cost() > budget {
			t.Fatalf("cost %d over budget %d after %d sets", m.Cost(), budget, i+1)
		}
		if v, ok := m.Load(fmt.Sprint(i)); !ok || v != i {
			t.Fatalf("item %d not held right after its Set", i)
		}
	}
	if n := m.Len(); n != 100 {
		t.Fatalf("%d items held, want the 100 that fit", n)
	}
	if m.Set("big", 0, budget, 0) {
		t.Fatal("Set stored an item over the budget")
	}
}

// A key read between insertions survives a scan of cold keys many times
// the budget.
func TestClockKeepsHotKeyUnderScan(t *testing.T) {
	m := New[int](50 * (10 + ItemOverhead))
	m.Set("hot", -1, 10, 0)
	for i := 0; i < 10000; i++ {
		if _, ok := m.Load("hot"); !ok {
			t.Fatalf("hot key evicted after %d cold insertions", i)
		}
		m.Set(fmt.Sprint("cold", i), i, 10, 0)
	}
}

func TestExpiredItemsAreNotLoadedAndGoFirst(t *testing.T) {
	m := New[int](3 * (10 + ItemOverhead))
	m.Set("old", 1, 10, time.Nanosecond)
	m.Set("a", 2, 10, 0)
	m.Set("b", 3, 10, 0)
	time.Sleep(time.Millisecond) // the item's expiry, not a synchronisation
	if _, ok := m.Load("old"); ok {
		t.Fatal("expired item loaded")
	}
	_, _ = m.Load("a")
	_, _ = m.Load("b")
	m.Set("c", 4, 10, 0)
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := m.Load(k); !ok {
			t.Fatalf("%s evicted while an expired item was held", k)
		}
	}
}

// A Set on one goroutine is seen by the very next Load on another, with
// no wait in between.
func TestSetVisibleToNextLoadOnAnotherGoroutine(t *testing.T) {
	m := New[int](1 << 20)
	next := make(chan string)
	done := make(chan error)
	go func() {
		for k := range next {
			if _, ok := m.Load(k); !ok {
				done <- fmt.Errorf("%s not visible", k)
				continue
			}
			done <- nil
		}
	}()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprint("k", i)
		m.Set(k, i, 1, 0)
		next <- k
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	close(next)
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	m := New[[2]int](200 * (8 + ItemOverhead))
	var writers, readers sync.WaitGroup
	var stop atomic.Bool
	var bad atomic.Value
	for w := 0; w < 4; w++ {
		writers.Add(1)
		go func(w int) {
			defer writers.Done()
			for i := 0; i < 5000; i++ {
				k := i % 500
				m.Set(fmt.Sprint(k), [2]int{k, w}, 8, 0)
				if i%7 == 0 {
					m.Delete(fmt.Sprint((k + 1) % 500))
				}
			}
		}(w)
	}
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; !stop.Load(); i++ {
				k := i % 500
				if v, ok := m.Load(fmt.Sprint(k)); ok && v[0] != k {
					bad.Store(fmt.Sprintf("Load(%d) = %v", k, v))
				}
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if m.Cost() > m.MaxCost() {
		t.Fatalf("cost %d over budget %d", m.Cost(), m.MaxCost())
	}
	if m.Len() == 0 {
		t.Fatal("nothing held")
	}
}

func TestLoadAllocatesNothing(t *testing.T) {
	m := New[*int](1 << 20)
	v := 1
	m.Set("key", &v, 8, 0)
	m.Set("expiring", &v, 8, time.Hour)
	if n := testing.AllocsPerRun(1000, func() {
		_, _ = m.Load("key")
		_, _ = m.Load("expiring")
		_, _ = m.Load("missing")
	}); n != 0 {
		t.Fatalf("Load allocates %v times", n)
	}
}

func BenchmarkLoadHit(b *testing.B) {
	m := New[*int](1 << 20)
	v := 1
	m.Set("rc:r:\x013\x01r\x03GET\x01d\x00\x15GET /articles/{id}", &v, 8, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = m.Load("rc:r:\x013\x01r\x03GET\x01d\x00\x15GET /articles/{id}")
		}
	})
}

// Cold items stored after a hot one, never read, go before it: in a map
// of ten items (each trial a new hash seed, so a new spread over shards),
// a key read before every insertion is never the one evicted.
func TestClockEvictsUnreadBeforeRead(t *testing.T) {
	for trial := 0; trial < 200; trial++ {
		m := New[int](10 * (6 + ItemOverhead))
		for i := 0; i < 10; i++ {
			m.Set(fmt.Sprintf("k%05d", i), i, 6, 0)
		}
		for i := 10; i < 100; i++ {
			if _, ok := m.Load("k00000"); !ok {
				t.Fatalf("trial %d: the key read before every insertion was evicted at %d", trial, i)
			}
			m.Set(fmt.Sprintf("k%05d", i), i, 6, 0)
		}
	}
}

// LoadPtr answers as Load does (nothing for a key absent, deleted or
// expired), with the address of the value the item holds: a value read
// through it stays the one stored, whatever the map does with the key
// afterwards.
func TestLoadPtrIsLoadByAddress(t *testing.T) {
	m := New[[2]int](1 << 20)
	if m.LoadPtr("a") != nil {
		t.Fatal("empty map holds a")
	}
	m.Set("a", [2]int{1, 1}, 10, 0)
	p := m.LoadPtr("a")
	if p == nil || *p != [2]int{1, 1} {
		t.Fatalf("LoadPtr(a) = %v after Set", p)
	}
	if q := m.LoadPtr("a"); q != p {
		t.Fatal("two reads of one item give two addresses: not the item's value")
	}
	m.Set("a", [2]int{2, 2}, 10, 0)
	if q := m.LoadPtr("a"); q == nil || *q != [2]int{2, 2} {
		t.Fatalf("LoadPtr(a) = %v after replacement", q)
	}
	if *p != [2]int{1, 1} {
		t.Fatalf("the value read before the replacement changed to %v", *p)
	}
	m.Delete("a")
	if m.LoadPtr("a") != nil {
		t.Fatal("LoadPtr finds a deleted key")
	}
	m.Set("old", [2]int{3, 3}, 10, time.Nanosecond)
	time.Sleep(time.Millisecond) // the item's expiry, not a synchronisation
	if m.LoadPtr("old") != nil {
		t.Fatal("expired item loaded")
	}
}
