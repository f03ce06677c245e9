package core

import (
	"strings"
	"testing"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// TestBackendContract runs the backend contract suite on the remote
// backends and their near caches, against the test servers.
func TestBackendContract(t *testing.T) {
	for _, tc := range []struct{ name, env, url string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://%s/0?timeout=2s"},
		{"redis-cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://%s?timeout=2s"},
		{"memcache", "ROUTECACHE_TEST_MEMCACHE", "memcache://%s?timeout=2s"},
		{"near-redis", "ROUTECACHE_TEST_REDIS", "redis://%s/0?timeout=2s&near_max_bytes=4MiB"},
		{"near-memcache", "ROUTECACHE_TEST_MEMCACHE", "memcache://%s?timeout=2s&near_max_bytes=4MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := backendtest.Server(t, tc.env)
			raw := strings.Replace(tc.url, "%s", addr, 1)
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				be, err := openBackend(raw, backend.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if p, ok := be.(backend.Preparer); ok {
					p.Prepare(nil)
				}
				return be
			}, backendtest.RefusesEntriesOver(2<<20))
		})
	}
}
