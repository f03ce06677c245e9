package gincache_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gincache "github.com/chenyahui/gin-cache"
	"github.com/chenyahui/gin-cache/persist"
	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
	"github.com/routecache/routecache/internal/benchwriter"
)

// The route, body and query string of ginadapter's BenchmarkGin.
const target = "/articles/42?page=2&sort=title"

var body1K = []byte(`{"id":42,"title":"` + strings.Repeat("x", 1000) + `"}`)

// The variants every benchmark here runs side by side.
const (
	uncached  = "uncached"
	peerHit   = "gin-cache-hit"  // chenyahui/gin-cache, memory store, CacheByRequestURI
	routeHit  = "routecache-hit" // ginadapter on a memory region
	cacheTime = time.Hour
)

var variants = []string{uncached, peerHit, routeHit}

// setup is one variant's engine and what it counts: origin calls of the
// cached variants (the uncached handler counts nothing, so that its
// figures are ginadapter's BenchmarkGin's) and hits as each cache reports
// them: routecache's Stats, always kept, and gin-cache's hit callback,
// set only when peerHits is asked for (it would add an atomic add per hit
// that gin-cache does not pay on its own).
type setup struct {
	engine *gin.Engine
	origin atomic.Int64
	hits   func() int64
}

func newSetup(tb testing.TB, variant string, peerHits bool) *setup {
	gin.SetMode(gin.ReleaseMode)
	s := &setup{engine: gin.New(), hits: func() int64 { return 0 }}
	h := func(c *gin.Context) {
		s.origin.Add(1)
		c.Data(http.StatusOK, "application/json", body1K)
	}
	switch variant {
	case uncached:
		s.engine.GET("/articles/:id", func(c *gin.Context) {
			c.Data(http.StatusOK, "application/json", body1K)
		})
	case peerHit:
		store := persist.NewMemoryStore(cacheTime)
		tb.Cleanup(func() { _ = store.Cache.Close() })
		var opts []gincache.Option
		if peerHits {
			var n atomic.Int64
			opts = append(opts, gincache.WithOnHitCache(func(*gin.Context) { n.Add(1) }))
			s.hits = n.Load
		}
		s.engine.GET("/articles/:id", gincache.CacheByRequestURI(store, cacheTime, opts...), h)
	case routeHit:
		rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": {}}})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { rc.Close() })
		s.hits = func() int64 { return int64(rc.Stats()["articles"].Hits) }
		s.engine.GET("/articles/:id", ginadapter.Cache(rc, "articles", core.Tags("article:{id}", "articles")), h)
	default:
		tb.Fatalf("unknown variant %q", variant)
	}
	return s
}

// request is the benchmark's request as a server hands it over:
// gin-cache keys on RequestURI, which http.NewRequest leaves empty.
func request() *http.Request {
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.RequestURI = target
	return req
}

// serve answers req into w and checks the answer is the whole body.
func (s *setup) serve(tb testing.TB, w *benchwriter.Discard, req *http.Request) {
	w.Reset()
	s.engine.ServeHTTP(w, req)
	if w.Status != http.StatusOK || w.N != len(body1K) {
		tb.Fatalf("status %d, %d bytes; want 200, %d bytes", w.Status, w.N, len(body1K))
	}
}

// checkHits fails tb unless a cached variant ran its origin once (the
// fill) for all its requests, every one of them answered in full, and,
// when the cache's hit count is kept, counted a hit for every other
// request.
func (s *setup) checkHits(tb testing.TB, variant string, requests int64, countHits bool) {
	tb.Helper()
	if variant == uncached {
		return
	}
	origin, hits := s.origin.Load(), s.hits()
	if origin != 1 || (countHits && hits != requests-1) {
		tb.Fatalf("%s: %d origin calls and %d hits for %d requests; want 1 and %d", variant, origin, hits, requests, requests-1)
	}
}
