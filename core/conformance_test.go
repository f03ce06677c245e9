package core_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/cachetest"
)

// TestConformance runs the shared suite against plain net/http: an
// http.ServeMux with Go 1.22 patterns, each registered handler wrapped in
// rc.Middleware / rc.InvalidateMiddleware.
func TestConformance(t *testing.T) {
	cachetest.Run(t, NetHTTPFront, cachetest.Memory)
}

// NetHTTPFront is the net/http front of the conformance suite.
var NetHTTPFront = cachetest.Front{Name: "net/http", Build: buildNetHTTP}

func buildNetHTTP(t testing.TB, rc *core.Cache, app cachetest.App) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range app.Routes {
		handler := rt.Handler
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handler(w, r, r.PathValue)
		})
		if rt.Gzip == cachetest.GzipInside {
			h = gzipHandler(h)
		}
		if len(rt.Invalidate) > 0 {
			mw, err := rc.InvalidateMiddleware(rt.Invalidate...)
			if err != nil {
				t.Fatalf("InvalidateMiddleware for %s %s: %v", rt.Method, rt.Path, err)
			}
			h = mw(h)
		}
		if rt.Cache != nil {
			mw, err := rc.Middleware(rt.Cache.Region, rt.Cache.Options...)
			if err != nil {
				t.Fatalf("Middleware for %s %s: %v", rt.Method, rt.Path, err)
			}
			h = mw(h)
		}
		if rt.Gzip == cachetest.GzipOutside {
			h = gzipHandler(h)
		}
		mux.Handle(rt.Method+" "+serveMuxPath(rt.Path), h) // "GET /x" also answers HEAD
	}
	var h http.Handler = mux
	if before := app.Before; before != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			before(w, r)
			inner.ServeHTTP(w, r)
		})
	}
	return recoverer(h)
}

// serveMuxPath turns "/articles/:id" into "/articles/{id}" and
// "/files/*path" into "/files/{path...}".
func serveMuxPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, ":"):
			segs[i] = "{" + s[1:] + "}"
		case strings.HasPrefix(s, "*"):
			segs[i] = "{" + s[1:] + "...}"
		}
	}
	return strings.Join(segs, "/")
}

// recoverer answers 500 to a panicking handler, as Gin's and Echo's
// recovery middleware do (net/http itself would drop the connection).
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// The same scenarios against every backend the test command starts.
func TestConformanceBackends(t *testing.T) {
	backends := map[string]string{
		"redis":         "redis://" + serverEnv(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=2s",
		"redis-near":    "redis://" + serverEnv(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=2s&near_max_bytes=8MiB",
		"redis-cluster": "redis+cluster://" + serverEnv(t, "ROUTECACHE_TEST_REDIS_CLUSTER") + "?timeout=2s",
		"memcache":      "memcache://" + serverEnv(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=2s",
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) { cachetest.Run(t, NetHTTPFront, cachetest.WithBackend(url)) })
	}
}

// serverEnv is core's testServer for this external test package: skip
// outside CI when the test command's server is not there, fail under CI.
func serverEnv(t *testing.T, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set under CI=true: run make test", env)
		}
		t.Skipf("%s not set: run make test to start the servers", env)
	}
	return v
}
