package core

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/near"
)

// Helpers of the white-box tests (package core) whose black-box twins
// live in helpers_test.go.

// quietLogger discards what it is given.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testPrefix is a region prefix no other test uses.
func testPrefix() string { return fmt.Sprintf("t%d", backend.FreshCounter()%1e12) }

// openRegion opens a Cache whose region "r" (TTL an hour) is on url
// under prefix; it is closed when the test ends.
func openRegion(t *testing.T, url, prefix string) *Cache {
	t.Helper()
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {Backend: url, Prefix: prefix, TTL: time.Hour}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitCoherent waits until n's pub/sub subscription is up.
func waitCoherent(t *testing.T, n *near.Cache) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !n.Stats().Coherent; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the near cache never subscribed")
		}
	}
}
