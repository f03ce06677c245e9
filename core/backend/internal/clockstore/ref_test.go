package clockstore

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// refSlice views one Ref as a slice of it.
func refSlice(r *Ref) []Ref { return unsafe.Slice(r, 1) }

// LoadRefs answers what Load answers, whatever its refs remember: fresh
// ones, ones of another key, ones of items since deleted, replaced, moved
// by a rebuild or cleared.
func TestLoadRefsAnswersAsLoad(t *testing.T) {
	m := New[string](1 << 30)
	const n = 2000
	key := func(i int) string { return fmt.Sprintf("counter:%05d", i) }
	refs := make([]Ref, n)
	check := func(step string) {
		t.Helper()
		for i := 0; i < n; i++ {
			want, wok := m.Load(key(i))
			got, ok := loadRefOnly(m, key(i), &refs[i])
			if got != want || ok != wok {
				t.Fatalf("%s: %s through its ref = %q, %v; Load = %q, %v", step, key(i), got, ok, want, wok)
			}
		}
	}
	check("empty")
	for i := 0; i < n; i++ {
		m.Set(key(i), "v1:"+key(i), 10, 0)
	}
	check("after Set (refs were empty)")
	check("refs remembered")
	// Every ref now remembers the next key's item.
	shifted := make([]Ref, n)
	for i := 0; i < n; i++ {
		loadRefOnly(m, key((i+1)%n), &shifted[i])
	}
	for i := 0; i < n; i++ {
		if got, ok := loadRefOnly(m, key(i), &shifted[i]); !ok || got != "v1:"+key(i) {
			t.Fatalf("%s through another key's ref = %q, %v", key(i), got, ok)
		}
	}
	for i := 0; i < n; i += 3 {
		m.Delete(key(i))
	}
	check("after deletes")
	for i := 1; i < n; i += 3 {
		m.Set(key(i), "v2:"+key(i), 10, 0)
	}
	check("after replacements")
	for i := 0; i < n; i += 3 {
		m.Set(key(i), "v3:"+key(i), 10, 0) // refill: rebuilds tables
	}
	check("after refills")
	m.Clear()
	check("after Clear")
	for i := 0; i < n; i++ {
		m.Set(key(i), "v4:"+key(i), 10, 0)
	}
	check("after Clear and refill")
}

// loadRefOnly is LoadRefs for one key and its ref.
func loadRefOnly(m *Map[string], key string, r *Ref) (string, bool) {
	var v [1]string
	ok := m.LoadRefs([]string{key}, refSlice(r), v[:]) == 1
	return v[0], ok
}

// LoadRefs stops at the first key not held, and fills the values before.
func TestLoadRefsStopsAtFirstMissing(t *testing.T) {
	m := New[int](1 << 20)
	m.Set("a", 1, 1, 0)
	m.Set("c", 3, 1, 0)
	refs := make([]Ref, 3)
	vals := make([]int, 3)
	if n := m.LoadRefs([]string{"a", "b", "c"}, refs, vals); n != 1 || vals[0] != 1 {
		t.Fatalf("LoadRefs = %d, %v", n, vals)
	}
	m.Set("b", 2, 1, 0)
	if n := m.LoadRefs([]string{"a", "b", "c"}, refs, vals); n != 3 || vals[0] != 1 || vals[1] != 2 || vals[2] != 3 {
		t.Fatalf("LoadRefs = %d, %v", n, vals)
	}
	if !refs[0].Remembers() || !refs[2].Remembers() {
		t.Fatal("refs not kept")
	}
}

// Readers sharing refs with writers that delete, replace and rebuild
// read, for each key, a value of that key, and never one that was
// deleted before the read began.
func TestLoadRefsConcurrent(t *testing.T) {
	m := New[string](1 << 30)
	const keys = 64
	key := func(i int) string { return fmt.Sprintf("k%03d", i) }
	refs := make([]Ref, keys)
	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 2; w++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := n % keys
				if n%5 == 0 {
					m.Delete(key(i))
				} else {
					m.Set(key(i), fmt.Sprintf("%s#%d", key(i), n), 10, 0)
				}
			}
		}()
	}
	for r := 0; r < 2; r++ {
		readers.Add(1)
		go func(r int) {
			defer readers.Done()
			for n := 0; n < 20000; n++ {
				i := (n*7 + r) % keys
				if got, ok := loadRefOnly(m, key(i), &refs[i]); ok && !strings.HasPrefix(got, key(i)+"#") {
					t.Errorf("%s read %q", key(i), got)
					return
				}
			}
		}(r)
	}
	// The readers' 20000 reads each, then stop the writers: deleted keys
	// then stay deleted, and every ref, whatever it remembers, reads them
	// as missing.
	readers.Wait()
	close(stop)
	writers.Wait()
	for i := 0; i < keys; i++ {
		m.Delete(key(i))
		if got, ok := loadRefOnly(m, key(i), &refs[i]); ok {
			t.Fatalf("%s deleted, read %q through its ref", key(i), got)
		}
	}
}

// A TTL too long to add to the clock is as good as none.
func TestHugeTTLDoesNotExpire(t *testing.T) {
	m := New[int](1 << 20)
	m.Set("a", 1, 1, time.Duration(math.MaxInt64))
	if _, ok := m.Load("a"); !ok {
		t.Fatal("an item with the longest TTL is expired at once")
	}
}

// With the coarse clock running, an item is not served past its expiry:
// near it, the real clock decides.
func TestExpiryExactWithCoarseClock(t *testing.T) {
	StartClock()
	defer StopClock()
	m := New[int](1 << 20)
	for _, ttl := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 200 * time.Millisecond} {
		m.Set("a", 1, 1, ttl)
		end := time.Now().Add(ttl)
		if _, ok := m.Load("a"); !ok && time.Now().Before(end) {
			t.Fatalf("ttl %v: expired early", ttl)
		}
		time.Sleep(time.Until(end) + time.Millisecond)
		if _, ok := m.Load("a"); ok {
			t.Fatalf("ttl %v: served past its expiry", ttl)
		}
		var v [1]int
		if n := m.LoadRefs([]string{"a"}, make([]Ref, 1), v[:]); n != 0 {
			t.Fatalf("ttl %v: served past its expiry through LoadRefs", ttl)
		}
	}
	m.Set("b", 1, 1, time.Hour)
	if _, ok := m.Load("b"); !ok {
		t.Fatal("an item an hour from its expiry is expired")
	}
}

// The clock runs while it has users, and is cleared with the last.
func TestClockStartStop(t *testing.T) {
	StartClock()
	StartClock()
	if coarse.now.Load() == 0 {
		t.Fatal("clock not running")
	}
	StopClock()
	if coarse.now.Load() == 0 {
		t.Fatal("clock stopped with a user left")
	}
	StopClock()
	if coarse.now.Load() != 0 {
		t.Fatal("clock still set with no user")
	}
}
