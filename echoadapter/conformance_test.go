package echoadapter_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/cachetest"
	"github.com/routecache/routecache/echoadapter"
)

// TestConformance runs the shared suite against Echo.
func TestConformance(t *testing.T) {
	cachetest.Run(t, EchoFront, cachetest.Memory)
}

// EchoFront is the Echo front of the conformance suite.
var EchoFront = cachetest.Front{Name: "echo", Build: buildEcho}

func newEcho() *echo.Echo {
	e := echo.New()
	e.Use(recoverer)
	return e
}

// recoverer is what Echo's middleware.Recover does, without its logging:
// a panic becomes an error for the HTTPErrorHandler.
func recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				c.Error(fmt.Errorf("panic: %v", v))
				err = nil
			}
		}()
		return next(c)
	}
}

func buildEcho(t testing.TB, rc *core.Cache, app cachetest.App) http.Handler {
	e := newEcho()
	if before := app.Before; before != nil {
		e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				before(c.Response(), c.Request())
				return next(c)
			}
		})
	}
	for _, rt := range app.Routes {
		var mws []echo.MiddlewareFunc
		if rt.Gzip == cachetest.GzipOutside {
			mws = append(mws, middleware.Gzip())
		}
		if rt.Cache != nil {
			m, err := echoadapter.NewCache(rc, rt.Cache.Region, rt.Cache.Options...)
			if err != nil {
				t.Fatalf("NewCache for %s %s: %v", rt.Method, rt.Path, err)
			}
			mws = append(mws, m)
		}
		if len(rt.Invalidate) > 0 {
			m, err := echoadapter.NewInvalidate(rc, rt.Invalidate...)
			if err != nil {
				t.Fatalf("NewInvalidate for %s %s: %v", rt.Method, rt.Path, err)
			}
			mws = append(mws, m)
		}
		if rt.Gzip == cachetest.GzipInside {
			mws = append(mws, middleware.Gzip())
		}
		handler := rt.Handler
		h := func(c echo.Context) error {
			handler(c.Response(), c.Request(), c.Param)
			return nil
		}
		path := echoPath(rt.Path)
		e.Add(rt.Method, path, h, mws...)
		if rt.Method == http.MethodGet {
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
// without writing anything (Echo reports 200 before anything is written).
func TestEchoFailuresNotStored(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {Statuses: []int{200, 500}}})
	e := newEcho()
	cache := echoadapter.Cache(rc, "r")
	calls := map[string]int{}
	e.GET("/http-error", func(c echo.Context) error {
		calls["/http-error"]++
		return echo.NewHTTPError(http.StatusInternalServerError, "boom")
	}, cache)
	e.GET("/plain-error", func(c echo.Context) error {
		calls["/plain-error"]++
		return errors.New("boom")
	}, cache)
	e.GET("/written-then-error", func(c echo.Context) error {
		calls["/written-then-error"]++
		if err := c.String(http.StatusOK, "partial"); err != nil {
			return err
		}
		return errors.New("failed after writing")
	}, cache)
	e.GET("/nothing", func(c echo.Context) error {
		calls["/nothing"]++
		return nil
	}, cache)
	e.GET("/status-only", func(c echo.Context) error {
		calls["/status-only"]++
		c.Response().WriteHeader(http.StatusOK) // committed: a (empty) response
		return nil
	}, cache)
	e.GET("/ok", func(c echo.Context) error {
		calls["/ok"]++
		return c.String(http.StatusOK, "ok")
	}, cache)

	for _, path := range []string{"/http-error", "/plain-error", "/written-then-error", "/nothing"} {
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
	for _, path := range []string{"/ok", "/status-only"} {
		get(e, path)
		if res, _ := get(e, path); res.Header.Get("X-Cache") != "HIT" || calls[path] != 1 {
			t.Fatalf("%s: X-Cache %q after %d calls, want a HIT after 1", path, res.Header.Get("X-Cache"), calls[path])
		}
	}
	st := rc.Stats()["r"]
	if st.NotStored[core.NotStoredError] != 9 || st.Stores != 2 {
		t.Fatalf("stats %+v, want 9 not stored for error, 2 stores", st)
	}
}

// Echo-specific: an invalidating route whose handler returns an error does
// not invalidate; one that succeeds does, whether or not it wrote a body.
func TestEchoInvalidateOnErrorKeepsEntries(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {}})
	e := newEcho()
	n := 0
	e.GET("/a/:id", func(c echo.Context) error {
		n++
		return c.String(http.StatusOK, "a")
	}, echoadapter.Cache(rc, "r", core.Tags("a:{id}")))
	e.PUT("/a/:id", func(c echo.Context) error {
		return echo.NewHTTPError(http.StatusConflict)
	}, echoadapter.Invalidate(rc, core.Tags("a:{id}")))
	e.DELETE("/a/:id", func(c echo.Context) error {
		return c.NoContent(http.StatusNoContent)
	}, echoadapter.Invalidate(rc, core.Tags("a:{id}")))
	// Returning nil without writing is success too: Echo answers 200.
	e.PATCH("/a/:id", func(c echo.Context) error {
		return nil
	}, echoadapter.Invalidate(rc, core.Tags("a:{id}")))
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
