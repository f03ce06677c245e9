package near_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	_ "github.com/routecache/routecache/core/backend/memcache"
	"github.com/routecache/routecache/core/backend/near"
	_ "github.com/routecache/routecache/core/backend/redis"
)

// TestContract runs the backend contract suite on near caches in front of
// Redis (coherent by pub/sub) and Memcached (coherent by staleness).
func TestContract(t *testing.T) {
	for _, tc := range []struct{ name, env, inner string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://%s/0?timeout=2s"},
		{"memcache", "ROUTECACHE_TEST_MEMCACHE", "memcache://%s?timeout=2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := backendtest.Server(t, tc.env)
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				innerURL := fmtURL(tc.inner, addr)
				inner, err := backend.Open(innerURL, backend.Options{})
				if err != nil {
					t.Fatal(err)
				}
				u, err := url.Parse(innerURL + "&near_max_bytes=4MiB")
				if err != nil {
					t.Fatal(err)
				}
				be, err := near.Wrap(inner, u, u.Query(), backend.Options{})
				if err != nil {
					inner.Close()
					t.Fatal(err)
				}
				return be
			}, backendtest.RefusesEntriesOver(2<<20))
		})
	}
}

func fmtURL(pattern, addr string) string { return strings.Replace(pattern, "%s", addr, 1) }
