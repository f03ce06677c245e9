package echo5adapter_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
	"github.com/routecache/routecache/internal/benchwriter"
)

var body1K = []byte(`{"id":42,"title":"` + strings.Repeat("x", 1000) + `"}`)

func benchEcho(b testing.TB, cached bool) *echo.Echo {
	e := echo.New()
	h := func(c *echo.Context) error { return c.Blob(200, "application/json", body1K) }
	if cached {
		rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": {}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rc.Close() })
		e.GET("/articles/:id", h, echo5adapter.Cache(rc, "articles", core.Tags("article:{id}", "articles")))
	} else {
		e.GET("/articles/:id", h)
	}
	return e
}

func runBench(b *testing.B, h http.Handler) {
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	w := benchwriter.New()
	h.ServeHTTP(w, req) // fill
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.H)
		w.N = 0
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.N != len(body1K) || w.Status != 200 {
		b.Fatalf("status %d, wrote %d bytes", w.Status, w.N)
	}
}

// BenchmarkEcho compares the same 1 KiB response served by an uncached
// Echo v5 handler and replayed from a memory region.
func BenchmarkEcho5(b *testing.B) {
	b.Run("uncached", func(b *testing.B) { runBench(b, benchEcho(b, false)) })
	b.Run("memory-hit", func(b *testing.B) { runBench(b, benchEcho(b, true)) })
}
