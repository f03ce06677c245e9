package core_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/core/internal/testhook"
)

// Helpers shared by the black-box tests of package core (package
// core_test). The white-box tests of package core have their own.

func init() { testhook.Enable() }

// mapParams gives route parameters from a map.
type mapParams map[string]string

func (m mapParams) Get(n string) (string, bool) { v, ok := m[n]; return v, ok }

// noParams is the Params of a route without parameters.
var noParams = adapter.NoParams

// serveOnce runs one GET through a route (pattern "/items/:id") with
// handler h, as an adapter does.
func serveOnce(rt *core.Route, target string, p adapter.Params, h http.HandlerFunc) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", target, nil)
	_ = adapter.ServeRoute(rt, w, req, p, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	})
	return w
}

// xc is a response's X-Cache header.
func xc(w *httptest.ResponseRecorder) string { return w.Header().Get("X-Cache") }

// newGet is a GET request for target on host example.com.
func newGet(target string) *http.Request {
	req, _ := http.NewRequest("GET", "http://example.com"+target, nil)
	req.Host = "example.com"
	return req
}

// testRoute opens a Cache with one region "r" and returns a route on it.
func testRoute(t testing.TB, rc core.RegionConfig, opts ...core.RouteOption) *core.Route {
	t.Helper()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rt, err := c.Route("r", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// testServer returns the address list the test command exported in the
// named variable (ROUTECACHE_TEST_REDIS, ROUTECACHE_TEST_REDIS_CLUSTER,
// ROUTECACHE_TEST_MEMCACHE). Outside CI a missing server skips the test;
// under CI=true it fails it: CI must never pass by skipping.
func testServer(t testing.TB, env string) string {
	t.Helper()
	return backendtest.Server(t, env)
}

// testServerOptional returns the variable's value, or "" outside CI when it
// is unset (callers then test only what needs no server). Under CI=true an
// unset variable fails the test, as testServer does.
func testServerOptional(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" && os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set under CI=true: the test command must start the server (run `make test`)", env)
	}
	return v
}

// uniquePrefix keeps tests apart on shared servers without ever flushing.
func uniquePrefix(t testing.TB) string {
	return fmt.Sprintf("t%d", backend.FreshCounter()%1e12)
}

// redisURLs are the standalone and cluster test servers' URLs.
func redisURLs(t testing.TB) map[string]string {
	return map[string]string{
		"redis":   "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0",
		"cluster": "redis+cluster://" + testServer(t, "ROUTECACHE_TEST_REDIS_CLUSTER"),
	}
}

// withQuery appends URL query options to a backend URL.
func withQuery(u, opts string) string {
	if strings.Contains(u, "?") {
		return u + "&" + opts
	}
	return u + "?" + opts
}

// newBackendCache opens a Cache with one region "r" on a backend URL
// (under a fresh prefix unless rc names one).
func newBackendCache(t testing.TB, url string, rc core.RegionConfig) *core.Cache {
	t.Helper()
	rc.Backend = url
	if rc.Prefix == "" {
		rc.Prefix = uniquePrefix(t)
	}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// instances opens n Caches on one backend URL, as n replicas would.
func instances(t *testing.T, n int, url string, rc core.RegionConfig) []*core.Cache {
	t.Helper()
	rc.Backend = url
	if rc.Prefix == "" {
		rc.Prefix = uniquePrefix(t)
	}
	out := make([]*core.Cache, n)
	for i := range out {
		c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out
}

// waitFor polls cond for up to 30 s (a bound for a loaded machine, not an
// assertion on time).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitUntil polls cond for up to 60 s of wall-clock time (a bound for a
// loaded machine, where a 5 ms sleep may last far longer) and fails with
// msg if it never holds.
func waitUntil(t testing.TB, msg string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("timed out waiting: %s", msg)
}

// flightWaiters is how many requests wait on an in-process flight now
// (counted through the engine's test hook).
func flightWaiters() int { return testhook.Waiting(testhook.Flight) }

// leaseWaiters is how many calls poll for another instance's fill now.
func leaseWaiters() int { return testhook.Waiting(testhook.Lease) }

// quietLogger discards what it is given.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mcAddrs are the memcached test servers' addresses.
func mcAddrs(t testing.TB) []string {
	return strings.Split(testServer(t, "ROUTECACHE_TEST_MEMCACHE"), ",")
}

// mcURL builds a memcache:// URL. Unless the query sets one, it uses a 2 s
// timeout: the default 100ms is for production, and a busy test machine
// (the race detector, parallel packages) can exceed it on loopback.
func mcURL(addrs []string, query string) string {
	if !strings.Contains(query, "timeout=") {
		if query != "" {
			query += "&"
		}
		query += "timeout=2s"
	}
	return "memcache://" + strings.Join(addrs, ",") + "?" + query
}

// sampleEntry is a small entry with headers, a body and counters.
func sampleEntry() *backend.Entry {
	e := &backend.Entry{
		Status:     200,
		Header:     http.Header{"Content-Type": {"application/json"}, "Etag": {`"abc"`}},
		Body:       []byte(`{"id":1}`),
		Created:    1_700_000_000_000_000_000,
		FreshUntil: 1_700_000_300_000_000_000,
		StaleUntil: 1_700_000_360_000_000_000,
		ETag:       `"abc"`,
		Key:        "rc:3:rk1...",
		Counters:   []backend.CounterSnap{{Name: "rc:v:r:a", Value: 7}},
	}
	e.Prepare()
	return e
}
