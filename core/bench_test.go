package core_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
	memcachebe "github.com/routecache/routecache/core/backend/memcache"
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/memory"
)

// Benchmarks run each cached path beside its uncached baseline in the same
// run; `make bench` prints the ratios. Writers are minimal and reused so
// that a recorder's allocations do not hide the cache's own.

type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(s int)           { w.status = s }
func (w *benchWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

var benchBody = []byte(`{"id":42,"title":"` + strings.Repeat("x", 1000) + `"}`)

func benchHandler(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = []string{"application/json"}
	_, _ = w.Write(benchBody)
}

func benchMux(b testing.TB, c *core.Cache) http.Handler {
	mux := http.NewServeMux()
	if c == nil {
		mux.HandleFunc("GET /articles/{id}", benchHandler)
		return mux
	}
	mw, err := c.Middleware("r", core.Tags("article:{id}", "articles"))
	if err != nil {
		b.Fatal(err)
	}
	mux.Handle("GET /articles/{id}", mw(http.HandlerFunc(benchHandler)))
	return mux
}

func runHTTPBench(b *testing.B, h http.Handler, want string) {
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	w := &benchWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	h.ServeHTTP(w, req)
	if got := w.h.Get("X-Cache"); got != want {
		b.Fatalf("X-Cache %q, want %q", got, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		w.n = 0
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.n != len(benchBody) {
		b.Fatalf("wrote %d bytes", w.n)
	}
}

func benchCache(b *testing.B, beURL string) *core.Cache {
	return benchCacheWithPrefix(b, beURL, uniquePrefix(b))
}

// benchCacheWithPrefix is benchCache with the region's key prefix given:
// two Caches with one prefix share entries and counters.
func benchCacheWithPrefix(b *testing.B, beURL, prefix string) *core.Cache {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: beURL, Prefix: prefix}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkNetHTTP: net/http ServeMux, uncached handler vs memory-region hit.
func BenchmarkNetHTTP(b *testing.B) {
	b.Run("uncached", func(b *testing.B) { runHTTPBench(b, benchMux(b, nil), "") })
	b.Run("memory-hit", func(b *testing.B) { runHTTPBench(b, benchMux(b, benchCache(b, "")), "HIT") })
}

// BenchmarkRuntimeTags: a memory-region hit, and with ROUTECACHE_TEST_REDIS
// a near-cache hit, on an entry whose handler added 0, 1 or 8 tags with
// core.AddTags (the route also declares its two static tags, as in
// BenchmarkNetHTTP). A hit on an entry with runtime tags reads their
// counters in one more backend call.
func BenchmarkRuntimeTags(b *testing.B) {
	stores := []struct{ name, url string }{{"memory", ""}}
	if addr := os.Getenv("ROUTECACHE_TEST_REDIS"); addr != "" {
		stores = append(stores, struct{ name, url string }{"near", "redis://" + addr + "/0?near_max_bytes=16MiB"})
	}
	for _, st := range stores {
		for _, n := range []int{0, 1, 8} {
			benchRuntimeTags(b, st.name, st.url, n)
		}
	}
}

// benchRuntimeTags is BenchmarkRuntimeTags's case of n tags on a store.
func benchRuntimeTags(b *testing.B, store, url string, n int) {
	b.Run(fmt.Sprintf("%s-hit-%d", store, n), func(b *testing.B) {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("item:%d", i)
		}
		c := benchCache(b, url)
		mw, err := c.Middleware("r", core.Tags("article:{id}", "articles"))
		if err != nil {
			b.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /articles/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			core.AddTags(r.Context(), tags...)
			benchHandler(w, r)
		})))
		runHTTPBench(b, mux, "HIT")
	})
}

// BenchmarkNetHTTPParallel shows scaling with -cpu 1,2: the hit path takes
// no global lock.
func BenchmarkNetHTTPParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		c    func(b *testing.B) *core.Cache
	}{{"uncached", func(*testing.B) *core.Cache { return nil }}, {"memory-hit", func(b *testing.B) *core.Cache { return benchCache(b, "") }}} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchMux(b, tc.c(b))
			req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
			h.ServeHTTP(&benchWriter{h: http.Header{}}, req)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &benchWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, req)
				}
			})
		})
	}
}

// BenchmarkMiss: the cost of recording and storing. Every iteration is a
// new key (a miss that fills); the baseline serves the same requests uncached.
func BenchmarkMiss(b *testing.B) {
	for _, name := range []string{"uncached", "memory-miss"} {
		b.Run(name, func(b *testing.B) {
			var h http.Handler
			if name == "uncached" {
				h = benchMux(b, nil)
			} else {
				h = benchMux(b, benchCache(b, "memory://?max_bytes=1GiB"))
			}
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				reqs[i], _ = http.NewRequest("GET", fmt.Sprintf("/articles/%d", i), nil)
			}
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				h.ServeHTTP(w, reqs[i])
			}
		})
	}
}

// BenchmarkMissSize: BenchmarkMiss by body size, each miss beside the
// same handler uncached. The 1KiB body is written at once; 64KiB and 1MiB
// (the default MaxEntryBytes) in 32 KiB writes, as io.Copy does, with no
// Content-Length, so the recorder grows its buffer by append. The
// instruction count of the 1MiB pair needs a small N (GOGC=off under
// callgrind keeps every body): N1=100 N2=300.
func BenchmarkMissSize(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size.n/16)
		handler := func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["Content-Type"] = []string{"application/octet-stream"}
			for b := body; len(b) > 0; {
				n := min(len(b), 32<<10)
				_, _ = w.Write(b[:n])
				b = b[n:]
			}
		}
		for _, name := range []string{"uncached", "memory-miss"} {
			b.Run(size.name+"/"+name, func(b *testing.B) {
				mux := http.NewServeMux()
				if name == "uncached" {
					mux.HandleFunc("GET /blobs/{id}", handler)
				} else {
					mw, err := benchCache(b, "memory://?max_bytes=256MiB").Middleware("r", core.Tags("blob:{id}", "blobs"))
					if err != nil {
						b.Fatal(err)
					}
					mux.Handle("GET /blobs/{id}", mw(http.HandlerFunc(handler)))
				}
				reqs := make([]*http.Request, b.N)
				for i := range reqs {
					reqs[i], _ = http.NewRequest("GET", fmt.Sprintf("/blobs/%d", i), nil)
				}
				w := &benchWriter{h: http.Header{}}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					clear(w.h)
					w.n = 0
					mux.ServeHTTP(w, reqs[i])
				}
				b.StopTimer()
				if w.n != len(body) {
					b.Fatalf("wrote %d bytes, want %d", w.n, len(body))
				}
				if name != "uncached" && w.h.Get("X-Cache") != "MISS" {
					b.Fatalf("X-Cache %q, want MISS", w.h.Get("X-Cache"))
				}
			})
		}
	}
}

// BenchmarkRedis: one raw go-redis GET of the stored bytes (same client)
// vs a Redis-region hit (one pipeline: GETRANGE of the entry, MGET of the
// counters), and a near-cache hit vs a memory-region hit.
func BenchmarkRedis(b *testing.B) {
	addr := os.Getenv("ROUTECACHE_TEST_REDIS")
	if addr == "" {
		b.Skip("ROUTECACHE_TEST_REDIS not set: run make bench")
	}
	c := benchCache(b, "redis://"+addr+"/0")
	h := benchMux(b, c)
	runHTTPBench(b, h, "HIT") // warm: stores the entry
	rb := core.RegionBackend(c, "r").(*redisbe.Backend)
	keys, err := rb.Client().Keys(context.Background(), core.RegionNamespace(c, "r")+"e:*").Result()
	if err != nil || len(keys) != 1 {
		b.Fatalf("keys %v %v", keys, err)
	}
	b.Run("raw-get", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := rb.Client().Get(ctx, keys[0]).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same keys a hit reads (entry + region, key and tag counters), in
	// one raw MGET: what the hit costs on the wire, without the cache.
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	req.SetPathValue("id", "42")
	rt, _ := c.Route("r", core.Tags("article:{id}", "articles"))
	names, _ := core.CounterNames(rt, req, adapter.PathValues{R: req}, "GET /articles/{id}")
	mkeys := append([]string{keys[0]}, names...)
	b.Run("raw-mget", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := rb.Client().MGet(ctx, mkeys...).Result(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redis-hit", func(b *testing.B) { runHTTPBench(b, h, "HIT") })
	b.Run("memory-hit", func(b *testing.B) { runHTTPBench(b, benchMux(b, benchCache(b, "")), "HIT") })
	b.Run("near-hit", func(b *testing.B) {
		runHTTPBench(b, benchMux(b, benchCache(b, "redis://"+addr+"/0?near_max_bytes=16MiB")), "HIT")
	})
	// A near hit on an entry another instance stored (the L1 holds what
	// it decoded from Redis): the usual case behind several replicas.
	b.Run("near-hit-filled-elsewhere", func(b *testing.B) {
		prefix := uniquePrefix(b)
		req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
		w := &benchWriter{h: http.Header{}}
		benchMux(b, benchCacheWithPrefix(b, "redis://"+addr+"/0", prefix)).ServeHTTP(w, req) // stores the entry in Redis
		if got := w.h.Get("X-Cache"); got != "MISS" {
			b.Fatalf("filler: X-Cache %q", got)
		}
		runHTTPBench(b, benchMux(b, benchCacheWithPrefix(b, "redis://"+addr+"/0?near_max_bytes=16MiB", prefix)), "HIT")
	})
}

// BenchmarkMemcache: one raw GetMulti of the stored key vs a
// Memcached-region hit, on the configured servers and on the first one
// alone ("one-server/..."): with several servers the entry and its
// counters hash to different servers, so the hit's GetMulti asks more than
// one of them while the single-key baseline asks one.
func BenchmarkMemcache(b *testing.B) {
	addrs := os.Getenv("ROUTECACHE_TEST_MEMCACHE")
	if addrs == "" {
		b.Skip("ROUTECACHE_TEST_MEMCACHE not set: run make bench")
	}
	benchMemcache(b, addrs)
	if first, _, several := strings.Cut(addrs, ","); several {
		b.Run("one-server", func(b *testing.B) { benchMemcache(b, first) })
	}
}

func benchMemcache(b *testing.B, addrs string) {
	c := benchCache(b, "memcache://"+addrs+"?timeout=1s")
	h := benchMux(b, c)
	runHTTPBench(b, h, "HIT")
	mb := core.RegionBackend(c, "r").(*memcachebe.Backend)
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	req.SetPathValue("id", "42")
	req.Pattern = "GET /articles/{id}"
	rt, _ := c.Route("r", core.Tags("article:{id}", "articles"))
	key := core.StorageKey(rt, req, adapter.PathValues{R: req}, req.Pattern)
	b.Run("raw-getmulti", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			m, err := mb.Client().GetMulti([]string{key})
			if err != nil || m[key] == nil {
				b.Fatal(err, len(m))
			}
		}
	})
	// The same keys a hit reads (entry + counters), in one raw GetMulti.
	names, _ := core.CounterNames(rt, req, adapter.PathValues{R: req}, req.Pattern)
	mkeys := append([]string{key}, names...)
	b.Run("raw-getmulti-all", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			m, err := mb.Client().GetMulti(mkeys)
			if err != nil || m[key] == nil {
				b.Fatal(err, len(m))
			}
		}
	})
	b.Run("memcache-hit", func(b *testing.B) { runHTTPBench(b, h, "HIT") })
}

// TestMemoryBudget fills a memory region with ten times its byte budget of
// distinct entries and checks the live heap it holds (after GC) stays
// within the budget (+5%); it logs the bytes of overhead per entry. The
// "1KiB" case stores benchBody-sized entries; "mixed" stores bodies of
// 1 KiB to 900 KiB written in 4 KiB chunks, whose recorded buffers grow by
// append and so hold more capacity than length.
func TestMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 80-320 MiB")
	}
	cases := []struct {
		name   string
		budget int
		sizes  func(i int) int // body size of entry i
		total  int             // bytes of bodies to write
	}{
		{"1KiB", 8 << 20, func(int) int { return len(benchBody) }, 80 << 20},
		{"mixed", 32 << 20, func(i int) int {
			// A fixed pseudo-random spread over [1 KiB, 900 KiB].
			x := uint64(i)*0x9e3779b97f4a7c15 + 1
			x ^= x >> 31
			return 1<<10 + int(x%(899<<10))
		}, 320 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { memoryBudgetCase(t, tc.budget, tc.sizes, tc.total) })
	}
}

func memoryBudgetCase(t *testing.T, budget int, sizes func(int) int, total int) {
	chunk := []byte(strings.Repeat("x", 4<<10))
	handler := func(w http.ResponseWriter, r *http.Request) {
		var i int
		fmt.Sscan(r.PathValue("id"), &i)
		w.Header()["Content-Type"] = []string{"application/json"}
		for n := sizes(i); n > 0; n -= len(chunk) {
			_, _ = w.Write(chunk[:min(n, len(chunk))])
		}
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: fmt.Sprintf("memory://?max_bytes=%d", budget)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mw, err := c.Middleware("r", core.Tags("article:{id}", "articles"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /articles/{id}", mw(http.HandlerFunc(handler)))
	w := &benchWriter{h: http.Header{}}
	n, written := 0, 0
	for ; written < total; n++ {
		clear(w.h)
		req, _ := http.NewRequest("GET", fmt.Sprintf("/articles/%d", n), nil)
		mux.ServeHTTP(w, req)
		written += sizes(n)
	}
	core.RegionBackend(c, "r").(*memory.Backend).Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// Count what is actually resident.
	resident, residentBytes := 0, 0
	for i := 0; i < n; i++ {
		clear(w.h)
		req, _ := http.NewRequest("HEAD", fmt.Sprintf("/articles/%d", i), nil)
		mux.ServeHTTP(w, req)
		if w.h.Get("X-Cache") == "HIT" {
			resident++
			residentBytes += sizes(i)
		}
	}
	st := c.Stats()["r"]
	t.Logf("filled %d entries (%d MiB of bodies) into a %d MiB budget: %d resident (%.2f MiB of bodies), heap held %.2f MiB (%.1f%% of budget), %.0f bytes per resident entry beyond its body; stores %d",
		n, written>>20, budget>>20, resident, float64(residentBytes)/(1<<20), float64(held)/(1<<20), 100*float64(held)/float64(budget), float64(held-int64(residentBytes))/float64(max(resident, 1)), st.Stores)
	if held > int64(budget)*105/100 {
		t.Fatalf("heap held %d bytes for a %d byte budget", held, budget)
	}
	if resident == 0 {
		t.Fatal("nothing resident")
	}
}

// benchEntry is what a hit on the benchmark route decodes: the handler's
// Content-Type, the ETag and Last-Modified the cache adds, a canonical key
// and the region, key and two tag counters.
func benchEntry() *backend.Entry {
	e := &backend.Entry{
		Status: 200,
		Header: http.Header{
			"Content-Type":  {"application/json"},
			"Etag":          {core.StrongETag(benchBody)},
			"Last-Modified": {"Tue, 25 Nov 2025 22:46:45 GMT"},
		},
		Body:       benchBody,
		Created:    1_700_000_000_000_000_000,
		FreshUntil: 1_700_000_300_000_000_000,
		StaleUntil: 1_700_000_360_000_000_000,
		FillNanos:  12_345,
		Key:        "rc:r:\x013\x01r\x03GET\x01d\x00\x15GET /articles/{id}\x0c/articles/42\x11page=2&sort=title",
		Counters: []backend.CounterSnap{
			{Name: "rc:r:v:r", Value: 1 << 61}, {Name: "rc:r:v:k:0123456789abcdef0123456789abcdef", Value: 1 << 62},
			{Name: "rc:r:v:t:0123456789abcdef0123456789abcdef", Value: 1<<62 + 5}, {Name: "rc:r:v:t:fedcba9876543210fedcba9876543210", Value: 1<<62 + 9},
		},
	}
	e.ETag = e.Header.Get("Etag")
	return e
}

// BenchmarkDecodeEntry isolates decoding a remote value of benchEntry.
func BenchmarkDecodeEntry(b *testing.B) {
	v := benchEntry().Encode()
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := backend.DecodeEntry(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	s := string(v)
	b.Run("string", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := backend.DecodeString(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCompress: the hit cost of region compression, for a 20 KiB
// JSON body: a gzip client (the stored copy as is) and an identity client
// (a gunzip per hit) in a Compress region, beside an identity hit in a
// region without it and the uncached handler.
func BenchmarkCompress(b *testing.B) {
	body := []byte(realisticJSON(20 << 10))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	})
	mux := func(compress, cached bool) http.Handler {
		m := http.NewServeMux()
		if !cached {
			m.Handle("GET /page", handler)
			return m
		}
		c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Prefix: uniquePrefix(b), Compress: compress}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		mw, err := c.Middleware("r")
		if err != nil {
			b.Fatal(err)
		}
		m.Handle("GET /page", mw(handler))
		return m
	}
	for _, tc := range []struct {
		name             string
		compress, cached bool
		ae               string
	}{
		{"uncached", false, false, ""},
		{"hit-identity-region", false, true, ""},
		{"hit-identity-region-gzip-client", false, true, "gzip, deflate, br, zstd"},
		{"hit-compress-gzip-client", true, true, "gzip, deflate, br, zstd"},
		{"hit-compress-identity-client", true, true, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := mux(tc.compress, tc.cached)
			req, _ := http.NewRequest("GET", "/page", nil)
			if tc.ae != "" {
				req.Header.Set("Accept-Encoding", tc.ae)
			}
			w := &benchWriter{h: http.Header{}}
			h.ServeHTTP(w, req)
			clear(w.h)
			h.ServeHTTP(w, req)
			if tc.cached && w.h.Get("X-Cache") != "HIT" {
				b.Fatalf("X-Cache %q, want HIT", w.h.Get("X-Cache"))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				w.n = 0
				h.ServeHTTP(w, req)
			}
			b.StopTimer()
			b.ReportMetric(float64(w.n), "body-B/op")
		})
	}
}
