package echoadapter_test

import (
	"testing"

	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/core/cachetest"
)

// TestConformanceRedis runs the shared suite on Redis too: what a route
// stores (lifetimes, options, headers) goes through the remote envelope.
func TestConformanceRedis(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	cachetest.Run(t, EchoFront, cachetest.WithBackend("redis://"+addr+"/0?timeout=5s"))
}
