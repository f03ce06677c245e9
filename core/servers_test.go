package core

import (
	"os"
	"testing"
)

// testServer returns the address list the test command exported in the
// named variable (ROUTECACHE_TEST_REDIS, ROUTECACHE_TEST_REDIS_CLUSTER,
// ROUTECACHE_TEST_MEMCACHE). Outside CI a missing server skips the test;
// under CI=true it fails it: CI must never pass by skipping.
func testServer(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set under CI=true: the test command must start the server (run `make test`)", env)
		}
		t.Skipf("%s not set: run `make test` to start the servers", env)
	}
	return v
}
