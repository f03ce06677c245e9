package ginadapter_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
	"github.com/routecache/routecache/internal/benchwriter"
)

var body1K = []byte(`{"id":42,"title":"` + strings.Repeat("x", 1000) + `"}`)

func benchEngine(b testing.TB, cached bool) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	h := func(c *gin.Context) { c.Data(200, "application/json", body1K) }
	if cached {
		rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": {}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rc.Close() })
		r.GET("/articles/:id", ginadapter.Cache(rc, "articles", core.Tags("article:{id}", "articles")), h)
	} else {
		r.GET("/articles/:id", h)
	}
	return r
}

func runBench(b *testing.B, r http.Handler) {
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	w := benchwriter.New()
	r.ServeHTTP(w, req) // fill
	if w.Status != 200 {
		b.Fatalf("status %d", w.Status)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Reset()
		r.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.N != len(body1K) {
		b.Fatalf("wrote %d bytes", w.N)
	}
}

// BenchmarkGin compares the same 1 KiB response served by an uncached Gin
// handler and replayed from a memory region (run both: the difference is
// the cache's cost).
func BenchmarkGin(b *testing.B) {
	b.Run("uncached", func(b *testing.B) { runBench(b, benchEngine(b, false)) })
	b.Run("memory-hit", func(b *testing.B) {
		r := benchEngine(b, true)
		runBench(b, r)
	})
}
