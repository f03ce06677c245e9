package memory

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/routecache/routecache/core/backend"
)

// Store keeps a copy of a key that views memory the caller reuses, and
// the entry's own Key (no copy) for a key equal to it, whatever memory
// the key passed views.
func TestStoreOwnsItsKeys(t *testing.T) {
	m, _ := New(1 << 20)
	ctx := context.Background()
	buf := []byte("route:/a?x=1")
	key := unsafe.String(&buf[0], len(buf)) // as a pooled request buffer
	// A key that is not the entry's: copied.
	if err := m.Store(ctx, key, &backend.Entry{Status: 200, Key: "canonical"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// A key equal to the entry's, passed in the reused buffer too.
	buf2 := []byte("route:/b?x=1")
	key2 := unsafe.String(&buf2[0], len(buf2))
	if err := m.Store(ctx, key2, &backend.Entry{Status: 200, Key: "route:/b?x=1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXXXXXX")
	copy(buf2, "XXXXXXXXXXXX")
	if m.Entry("route:/a?x=1") == nil || m.Entry("route:/b?x=1") == nil {
		t.Fatal("a stored entry is not found by its key once the caller's buffer changed")
	}
	if m.Entry("XXXXXXXXXXXX") != nil {
		t.Fatal("found under the bytes the caller wrote since")
	}
}

// A key equal to the entry's Key costs no copy, and the entry's Held is
// in the store's item: storing takes one allocation (the item), not
// three (a key, a Held).
func TestStoreUnderEntryKeyDoesNotCopyIt(t *testing.T) {
	m, _ := New(1 << 20)
	ctx := context.Background()
	e := &backend.Entry{Status: 200, Key: "route:/articles/42", Body: make([]byte, 64)}
	e.Prepare()
	key := string([]byte("route:/articles/42")) // equal, not the same memory
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Store(ctx, key, e, time.Minute); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Fatalf("%v allocations per Store, want 1 (the item, holding the Held)", allocs)
	}
}
