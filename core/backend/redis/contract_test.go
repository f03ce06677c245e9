package redis_test

import (
	"testing"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	_ "github.com/routecache/routecache/core/backend/redis"
)

// TestContract runs the backend contract suite on Redis and Redis
// Cluster (a generous timeout: the suite checks behaviour, not latency).
func TestContract(t *testing.T) {
	for _, tc := range []struct{ name, env, scheme, path string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://", "/0"},
		{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.scheme + backendtest.Server(t, tc.env) + tc.path + "?timeout=2s"
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				be, err := backend.Open(raw, backend.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return be
			}, backendtest.RefusesEntriesOver(2<<20))
		})
	}
}
