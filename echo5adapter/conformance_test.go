package echo5adapter_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/core/cachetest"
	"github.com/routecache/routecache/echo5adapter"
)

// TestConformance runs the shared suite against Echo v5.
func TestConformance(t *testing.T) {
	cachetest.Run(t, Echo5Front, cachetest.Memory)
}

// The same scenarios on every backend the test command starts.
func TestConformanceBackends(t *testing.T) {
	backends := map[string]string{
		"redis":         "redis://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s",
		"redis-near":    "redis://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s&near_max_bytes=8MiB",
		"redis-cluster": "redis+cluster://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS_CLUSTER") + "?timeout=5s",
		"memcache":      "memcache://" + backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=5s",
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) { cachetest.Run(t, Echo5Front, cachetest.WithBackend(url)) })
	}
}

// TestConformanceAutoHead runs the suite with Echo v5's AutoHandleHEAD:
// HEAD reaches a GET route's chain through Echo's own body-discarding
// writer instead of a HEAD route of its own.
func TestConformanceAutoHead(t *testing.T) {
	cachetest.Run(t, cachetest.Front{Name: "echo5-autohead", Build: func(t testing.TB, rc *core.Cache, app cachetest.App) http.Handler {
		return build(t, rc, app, true)
	}}, cachetest.Memory)
}

// Echo5Front is the Echo v5 front of the conformance suite.
var Echo5Front = cachetest.Front{Name: "echo5", Build: func(t testing.TB, rc *core.Cache, app cachetest.App) http.Handler {
	return build(t, rc, app, false)
}}

func newEcho(autoHead bool) *echo.Echo {
	e := echo.NewWithConfig(echo.Config{Router: echo.NewRouter(echo.RouterConfig{AutoHandleHEAD: autoHead})})
	e.Use(recoverer)
	return e
}

// recoverer is what Echo's middleware.Recover does, without its stack
// capture (and without importing echo/v5/middleware): a panic becomes an
// error for the HTTPErrorHandler.
func recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return next(c)
	}
}

// build registers app on Echo v5. Without autoHead a GET route is
// registered for HEAD too, as the v4 front does.
func build(t testing.TB, rc *core.Cache, app cachetest.App, autoHead bool) http.Handler {
	e := newEcho(autoHead)
	if before := app.Before; before != nil {
		e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c *echo.Context) error {
				before(c.Response(), c.Request())
				return next(c)
			}
		})
	}
	for _, rt := range app.Routes {
		var mws []echo.MiddlewareFunc
		if rt.Cache != nil {
			m, err := echo5adapter.NewCache(rc, rt.Cache.Region, rt.Cache.Options...)
			if err != nil {
				t.Fatalf("NewCache for %s %s: %v", rt.Method, rt.Path, err)
			}
			mws = append(mws, m)
		}
		if len(rt.Invalidate) > 0 {
			m, err := echo5adapter.NewInvalidate(rc, rt.Invalidate...)
			if err != nil {
				t.Fatalf("NewInvalidate for %s %s: %v", rt.Method, rt.Path, err)
			}
			mws = append(mws, m)
		}
		handler := rt.Handler
		h := func(c *echo.Context) error {
			handler(c.Response(), c.Request(), c.Param)
			return nil
		}
		path := echoPath(rt.Path)
		e.Add(rt.Method, path, h, mws...)
		if rt.Method == http.MethodGet && !autoHead {
			e.Add(http.MethodHead, path, h, mws...)
		}
	}
	return e
}

// echoPath turns a catch-all "/files/*path" into Echo's "/files/*".
func echoPath(p string) string {
	if i := strings.LastIndex(p, "/*"); i >= 0 {
		return p[:i] + "/*"
	}
	return p
}

func get(h http.Handler, path string) (*http.Response, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result(), rec.Body.String()
}

// Echo-specific: a handler's error keeps its response out of the cache,
// even with a storable status, and so does a handler returning nil
// without writing anything (Echo answers an empty 200 then).
func TestEcho5FailuresNotStored(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {Statuses: []int{200, 500}}})
	e := newEcho(false)
	cache := echo5adapter.Cache(rc, "r")
	calls := map[string]int{}
	e.GET("/http-error", func(c *echo.Context) error {
		calls["/http-error"]++
		return echo.NewHTTPError(http.StatusInternalServerError, "boom")
	}, cache)
	e.GET("/plain-error", func(c *echo.Context) error {
		calls["/plain-error"]++
		return errors.New("boom")
	}, cache)
	e.GET("/written-then-error", func(c *echo.Context) error {
		calls["/written-then-error"]++
		if err := c.String(http.StatusOK, "partial"); err != nil {
			return err
		}
		return errors.New("failed after writing")
	}, cache)
	e.GET("/json-error", func(c *echo.Context) error {
		calls["/json-error"]++
		// The serializer fails before writing: Echo's JSON writer keeps
		// the status, and the error handler answers.
		return c.JSON(http.StatusOK, func() {})
	}, cache)
	e.GET("/nothing", func(c *echo.Context) error {
		calls["/nothing"]++
		return nil
	}, cache)
	e.GET("/status-only", func(c *echo.Context) error {
		calls["/status-only"]++
		c.Response().WriteHeader(http.StatusOK) // committed: a (empty) response
		return nil
	}, cache)
	e.GET("/ok", func(c *echo.Context) error {
		calls["/ok"]++
		return c.String(http.StatusOK, "ok")
	}, cache)

	for _, path := range []string{"/http-error", "/plain-error", "/written-then-error", "/json-error", "/nothing"} {
		for i := 0; i < 2; i++ {
			res, _ := get(e, path)
			if xc := res.Header.Get("X-Cache"); xc == "HIT" {
				t.Fatalf("%s #%d: served from the cache", path, i+1)
			}
		}
		if calls[path] != 2 {
			t.Fatalf("%s: handler ran %d times for 2 requests", path, calls[path])
		}
	}
	if res, _ := get(e, "/http-error"); res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("/http-error answered %d", res.StatusCode)
	}
	if res, body := get(e, "/json-error"); res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("/json-error answered %d %q, want the error handler's 500", res.StatusCode, body)
	}
	if res, body := get(e, "/nothing"); res.StatusCode != http.StatusOK || body != "" {
		t.Fatalf("/nothing answered %d %q, want Echo's empty 200", res.StatusCode, body)
	}
	for _, path := range []string{"/ok", "/status-only"} {
		get(e, path)
		if res, _ := get(e, path); res.Header.Get("X-Cache") != "HIT" || calls[path] != 1 {
			t.Fatalf("%s: X-Cache %q after %d calls, want a HIT after 1", path, res.Header.Get("X-Cache"), calls[path])
		}
	}
	st := rc.Stats()["r"]
	if st.NotStored[core.NotStoredError] != 13 || st.Stores != 2 {
		t.Fatalf("stats %+v, want 13 not stored for error, 2 stores", st)
	}
}

// Echo-specific: an invalidating route whose handler returns an error does
// not invalidate; one that succeeds does, whether or not it wrote a body.
func TestEcho5InvalidateOnErrorKeepsEntries(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {}})
	e := newEcho(false)
	n := 0
	e.GET("/a/:id", func(c *echo.Context) error {
		n++
		return c.String(http.StatusOK, "a")
	}, echo5adapter.Cache(rc, "r", core.Tags("a:{id}")))
	e.PUT("/a/:id", func(c *echo.Context) error {
		return echo.NewHTTPError(http.StatusConflict, "conflict")
	}, echo5adapter.Invalidate(rc, core.Tags("a:{id}")))
	e.DELETE("/a/:id", func(c *echo.Context) error {
		return c.NoContent(http.StatusNoContent)
	}, echo5adapter.Invalidate(rc, core.Tags("a:{id}")))
	// Returning nil without writing is success too: Echo answers 200.
	e.PATCH("/a/:id", func(c *echo.Context) error {
		return nil
	}, echo5adapter.Invalidate(rc, core.Tags("a:{id}")))
	do := func(method string) *http.Response {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(method, "/a/1", nil))
		return rec.Result()
	}
	do(http.MethodGet)
	if res := do(http.MethodPut); res.StatusCode != http.StatusConflict {
		t.Fatalf("PUT answered %d", res.StatusCode)
	}
	if res := do(http.MethodGet); res.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("after a failed PUT: X-Cache %q, want HIT", res.Header.Get("X-Cache"))
	}
	if res := do(http.MethodDelete); res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE answered %d", res.StatusCode)
	}
	if res := do(http.MethodGet); res.Header.Get("X-Cache") != "MISS" || n != 2 {
		t.Fatalf("after DELETE: X-Cache %q, %d calls; want MISS, 2", res.Header.Get("X-Cache"), n)
	}
	if res := do(http.MethodPatch); res.StatusCode != http.StatusOK {
		t.Fatalf("PATCH answered %d", res.StatusCode)
	}
	if res := do(http.MethodGet); res.Header.Get("X-Cache") != "MISS" || n != 3 {
		t.Fatalf("after PATCH: X-Cache %q, %d calls; want MISS, 3", res.Header.Get("X-Cache"), n)
	}
}

// What v5 changed in how a response reports being committed: inside the
// cached handler, echo.UnwrapResponse(c.Response()) finds a Response whose
// Committed, Status and Size follow the handler's writes, and after the
// cache middleware the route's own Response reports the answer sent, on
// a miss and on a hit, for outer middleware (a logger) to read.
func TestEcho5ResponseReportsCommitted(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {Statuses: []int{http.StatusAccepted}}})
	e := newEcho(false)
	type seen struct {
		committed bool
		status    int
		size      int64
	}
	var inner, outer []seen
	look := func(c *echo.Context) seen {
		r, err := echo.UnwrapResponse(c.Response())
		if err != nil {
			t.Errorf("UnwrapResponse: %v", err)
			return seen{}
		}
		return seen{r.Committed, r.Status, r.Size}
	}
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			err := next(c)
			outer = append(outer, look(c))
			return err
		}
	})
	e.GET("/a", func(c *echo.Context) error {
		before := look(c)
		if before.committed {
			t.Error("committed before the handler wrote")
		}
		err := c.String(http.StatusAccepted, "hello")
		inner = append(inner, look(c))
		return err
	}, echo5adapter.Cache(rc, "r"))
	for i, want := range []string{"MISS", "HIT"} {
		res, body := get(e, "/a")
		if res.StatusCode != http.StatusAccepted || body != "hello" || res.Header.Get("X-Cache") != want {
			t.Fatalf("request %d: %d %q %q, want 202 hello %s", i+1, res.StatusCode, body, res.Header.Get("X-Cache"), want)
		}
	}
	if len(inner) != 1 || inner[0] != (seen{true, http.StatusAccepted, 5}) {
		t.Errorf("inside the handler: %+v, want one committed 202 of 5 bytes", inner)
	}
	if len(outer) != 2 || outer[0] != (seen{true, http.StatusAccepted, 5}) || outer[1] != (seen{true, http.StatusAccepted, 5}) {
		t.Errorf("outer middleware saw %+v, want a committed 202 of 5 bytes on the miss and on the hit", outer)
	}
}
