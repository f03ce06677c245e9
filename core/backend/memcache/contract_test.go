package memcache_test

import (
	"testing"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	_ "github.com/routecache/routecache/core/backend/memcache"
)

// TestContract runs the backend contract suite on Memcached (a generous
// timeout: the suite checks behaviour, not latency).
func TestContract(t *testing.T) {
	raw := "memcache://" + backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=2s"
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := backend.Open(raw, backend.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return be
	}, backendtest.RefusesEntriesOver(2<<20))
}
