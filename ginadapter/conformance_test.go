package ginadapter_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	gzip "github.com/gin-contrib/gzip"
	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/cachetest"
	"github.com/routecache/routecache/ginadapter"
)

func init() { gin.SetMode(gin.TestMode) }

// TestConformance runs the shared suite against Gin.
func TestConformance(t *testing.T) {
	cachetest.Run(t, GinFront, cachetest.Memory)
}

// GinFront is the Gin front of the conformance suite.
var GinFront = cachetest.Front{Name: "gin", Build: buildGin}

func buildGin(t testing.TB, rc *core.Cache, app cachetest.App) http.Handler {
	r := gin.New()
	r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) {
		c.AbortWithStatus(http.StatusInternalServerError)
	}))
	if before := app.Before; before != nil {
		r.Use(func(c *gin.Context) {
			before(c.Writer, c.Request)
			c.Next()
		})
	}
	for _, rt := range app.Routes {
		var chain []gin.HandlerFunc
		if rt.Gzip == cachetest.GzipOutside {
			chain = append(chain, gzip.Gzip(gzip.DefaultCompression))
		}
		if rt.Cache != nil {
			h, err := ginadapter.NewCache(rc, rt.Cache.Region, rt.Cache.Options...)
			if err != nil {
				t.Fatalf("NewCache for %s %s: %v", rt.Method, rt.Path, err)
			}
			chain = append(chain, h)
		}
		if len(rt.Invalidate) > 0 {
			h, err := ginadapter.NewInvalidate(rc, rt.Invalidate...)
			if err != nil {
				t.Fatalf("NewInvalidate for %s %s: %v", rt.Method, rt.Path, err)
			}
			chain = append(chain, h)
		}
		if rt.Gzip == cachetest.GzipInside {
			chain = append(chain, gzip.Gzip(gzip.DefaultCompression))
		}
		handler := rt.Handler
		chain = append(chain, func(c *gin.Context) { handler(c.Writer, c.Request, c.Param) })
		r.Handle(rt.Method, rt.Path, chain...) // Gin's syntax is the suite's
		if rt.Method == http.MethodGet {
			r.Handle(http.MethodHead, rt.Path, chain...)
		}
	}
	return r
}

// Gin-specific: responses Gin reports as failed are not stored even when
// their status is storable.
func TestGinFailuresNotStored(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {Statuses: []int{200, 403}}})
	r := gin.New()
	var calls int
	cache := ginadapter.Cache(rc, "r")
	r.GET("/abort", cache, func(c *gin.Context) {
		calls++
		c.String(http.StatusOK, "partial")
		c.Abort()
	})
	r.GET("/abort-status", cache, func(c *gin.Context) {
		calls++
		c.AbortWithStatus(http.StatusForbidden)
	})
	r.GET("/error", cache, func(c *gin.Context) {
		calls++
		_ = c.Error(io.ErrUnexpectedEOF)
		c.String(http.StatusOK, "with error")
	})
	// A middleware after the cache aborting the chain.
	r.GET("/mw-abort", cache, func(c *gin.Context) {
		calls++
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "denied"})
	}, func(c *gin.Context) { t.Error("handler ran after an abort") })
	// A control: a plain 403 in a region that stores 403 is stored.
	r.GET("/forbidden", cache, func(c *gin.Context) {
		calls++
		c.String(http.StatusForbidden, "no")
	})

	get := func(path string) *http.Response { return serve(r, path) }
	for _, path := range []string{"/abort", "/abort-status", "/error", "/mw-abort"} {
		before := calls
		for i := 0; i < 2; i++ {
			res := get(path)
			if xc := res.Header.Get("X-Cache"); xc != "MISS" {
				t.Fatalf("%s #%d: X-Cache %q, want MISS (not stored)", path, i+1, xc)
			}
		}
		if calls-before != 2 {
			t.Fatalf("%s: handler ran %d times for 2 requests", path, calls-before)
		}
	}
	if res := get("/forbidden"); res.Header.Get("X-Cache") != "MISS" || res.StatusCode != 403 {
		t.Fatalf("/forbidden: %d %q", res.StatusCode, res.Header.Get("X-Cache"))
	}
	if res := get("/forbidden"); res.Header.Get("X-Cache") != "HIT" || res.StatusCode != 403 {
		t.Fatalf("/forbidden again: %d %q, want a 403 HIT", res.StatusCode, res.Header.Get("X-Cache"))
	}
	st := rc.Stats()["r"]
	if st.NotStored[core.NotStoredError] != 8 || st.Stores != 1 {
		t.Fatalf("stats %+v, want 8 not stored for error, 1 store", st)
	}
}

// A handler that panics after writing part of a response leaves nothing in
// the cache, and Gin's writer is restored for the recovery handler.
func TestGinPanicAfterWrite(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {}})
	r := gin.New()
	r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) {
		c.AbortWithStatus(http.StatusInternalServerError)
	}))
	calls := 0
	r.GET("/p", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		calls++
		if calls == 1 {
			c.String(http.StatusOK, "half")
			panic("boom")
		}
		c.String(http.StatusOK, "whole")
	})
	serve(r, "/p")
	res := serve(r, "/p")
	if res.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("second request: X-Cache %q, want MISS", res.Header.Get("X-Cache"))
	}
	if b, _ := io.ReadAll(res.Body); !strings.Contains(string(b), "whole") {
		t.Fatalf("second body %q", b)
	}
	if st := rc.Stats()["r"]; st.NotStored[core.NotStoredPanic] != 1 {
		t.Fatalf("stats %+v, want 1 panic", st)
	}
}

func serve(h http.Handler, path string) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

// Gin's error-handling pattern: handlers record c.Error and return without
// writing; a global middleware renders c.Errors after c.Next. The cache and
// the invalidator must leave that response to the middleware (a 500 here),
// store nothing and invalidate nothing.
func TestGinErrorMiddleware(t *testing.T) {
	rc := cachetest.Memory(t, map[string]core.RegionConfig{"r": {}})
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Next()
		if len(c.Errors) > 0 && !c.Writer.Written() {
			c.String(http.StatusInternalServerError, "rendered: "+c.Errors.Last().Error())
		}
	})
	fail := false
	calls := 0
	r.GET("/a", ginadapter.Cache(rc, "r", core.Tags("a")), func(c *gin.Context) {
		calls++
		if fail {
			_ = c.Error(errors.New("db down"))
			return
		}
		c.String(http.StatusOK, "a")
	})
	r.PUT("/a", ginadapter.Invalidate(rc, core.Tags("a")), func(c *gin.Context) {
		_ = c.Error(errors.New("db down"))
	})
	do := func(method string) (*http.Response, string) {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(method, "/a", nil))
		return rec.Result(), rec.Body.String()
	}
	if res, _ := do(http.MethodGet); res.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("fill: %q", res.Header.Get("X-Cache"))
	}
	res, body := do(http.MethodPut)
	if res.StatusCode != http.StatusInternalServerError || body != "rendered: db down" {
		t.Fatalf("failed PUT answered %d %q, want the error middleware's 500", res.StatusCode, body)
	}
	if res, _ := do(http.MethodGet); res.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("after a failed PUT: X-Cache %q, want HIT (not invalidated)", res.Header.Get("X-Cache"))
	}
	if err := rc.InvalidateTags(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	fail = true
	for i := 0; i < 2; i++ {
		res, body := do(http.MethodGet)
		if res.StatusCode != http.StatusInternalServerError || body != "rendered: db down" {
			t.Fatalf("failing GET answered %d %q, want the error middleware's 500", res.StatusCode, body)
		}
	}
	if calls != 3 {
		t.Fatalf("handler ran %d times, want 3", calls)
	}
}
