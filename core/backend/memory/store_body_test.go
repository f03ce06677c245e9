package memory

import (
	"context"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Store keeps a body whose capacity is its length (one write, or
// pre-sized) as it is, and trims one that grew by append to an exactly
// sized copy.
func TestStoreCopiesOnlyBodiesWithSpareCapacity(t *testing.T) {
	m, _ := New(1 << 20)
	ctx := context.Background()
	exact := make([]byte, 5000)
	e := &backend.Entry{Status: 200, Body: exact}
	if err := m.Store(ctx, "k1", e, time.Minute); err != nil {
		t.Fatal(err)
	}
	if &e.Body[0] != &exact[0] {
		t.Fatal("an exactly sized body was copied")
	}
	grown := make([]byte, 5000, 10000)
	e = &backend.Entry{Status: 200, Body: grown}
	if err := m.Store(ctx, "k2", e, time.Minute); err != nil {
		t.Fatal(err)
	}
	if &e.Body[0] == &grown[0] || cap(e.Body) >= 10000 || len(e.Body) != 5000 {
		t.Fatalf("a body with spare capacity was kept: len %d cap %d", len(e.Body), cap(e.Body))
	}
}
