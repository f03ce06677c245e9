package gocache_test

import (
	"testing"

	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/core/backend/gocache"
)

// TestContract runs the suite on gocache's Redis store.
func TestContract(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		client := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { client.Close() })
		return gocache.New(redisstore.NewRedis(client))
	})
}
