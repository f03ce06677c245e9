package gincache_test

import (
	"net/http"
	"testing"

	"github.com/routecache/routecache/internal/benchwriter"
)

// BenchmarkGinCache serves the same 1 KiB response uncached, replayed by
// chenyahui/gin-cache (memory store, CacheByRequestURI) and replayed by
// routecache's ginadapter (memory region), in one run. The cached
// variants fail unless the origin ran only for the fill (and, for
// routecache, its Stats counted every other request a hit).
func BenchmarkGinCache(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := newSetup(b, v, false)
			req := request()
			w := benchwriter.New()
			s.serve(b, w, req) // fill
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.Reset()
				s.engine.ServeHTTP(w, req)
			}
			b.StopTimer()
			if w.Status != http.StatusOK || w.N != len(body1K) {
				b.Fatalf("status %d, %d bytes", w.Status, w.N)
			}
			s.checkHits(b, v, int64(b.N)+1, v == routeHit)
		})
	}
}

// BenchmarkGinCacheParallel is BenchmarkGinCache from every P (run it
// with -cpu 1,2: a path that takes a shared lock scales worse).
func BenchmarkGinCacheParallel(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			s := newSetup(b, v, false)
			s.serve(b, benchwriter.New(), request()) // fill
			b.ReportAllocs()
			b.ResetTimer()
			var requests int64 = 1
			var served = make(chan int64, 64)
			b.RunParallel(func(pb *testing.PB) {
				req := request()
				w := benchwriter.New()
				var n int64
				for pb.Next() {
					w.Reset()
					s.engine.ServeHTTP(w, req)
					n++
				}
				served <- n
			})
			b.StopTimer()
			close(served)
			for n := range served {
				requests += n
			}
			s.checkHits(b, v, requests, v == routeHit)
		})
	}
}
