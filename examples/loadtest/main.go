// Command loadtest drives cached and uncached copies of one route over
// loopback HTTP with concurrent clients for a bounded time, and prints
// requests/s, p50/p99 latency and origin calls for each, and each cached
// variant's requests/s and p99 as ratios to the uncached one's from the
// same run, so the figures in docs/benchmarks.md can be reproduced on
// other hardware:
//
//	go run ./examples/loadtest -duration 5s -c 64 [-rounds 3] [-redis 127.0.0.1:6379] [-memcache 127.0.0.1:11211]
//
// The variants are driven in turn, -rounds times, and each is reported by
// its median round, so a change in the machine's load during the run
// weighs on every variant alike. Origin calls are those of that round.
// Each variant is a Gin server on its own loopback port serving the same
// 1 KiB JSON body: "uncached" (the handler every time), "static+hdr"
// (the same handler also sending the five headers a hit adds), "memory"
// (a memory region), and, when addresses are given, "redis" and
// "memcache".
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
)

var body = []byte(`{"id":42,"title":"` + strings.Repeat("x", 1000) + `"}`)

// result is one round of one variant.
type result struct {
	rps      float64
	p50, p99 time.Duration
	origin   int64
}

type variant struct {
	name    string
	backend string // "" = uncached, else a region backend URL
	// hitHeaders: the uncached handler also sends the headers a hit adds
	// (Age, Cache-Status, X-Cache, ETag, Last-Modified; hitHeaderSet), so
	// that what they cost the server and the client (which shares the
	// process) is told apart from what the cache costs.
	hitHeaders bool
}

// hitHeaderSet is what a memory hit adds to the uncached response, with
// values of about the same lengths.
var hitHeaderSet = map[string]string{
	"Age":           "0",
	"Cache-Status":  "routecache; hit; ttl=299",
	"X-Cache":       "HIT",
	"Etag":          `"c8f1d1b9e2a4f0a7-1017"`,
	"Last-Modified": "Thu, 03 Dec 2026 02:49:34 GMT",
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long to drive each variant")
	conc := flag.Int("c", 64, "concurrent clients")
	redisAddr := flag.String("redis", os.Getenv("ROUTECACHE_TEST_REDIS"), "Redis host:port for the redis variant (empty: skip)")
	mcAddr := flag.String("memcache", os.Getenv("ROUTECACHE_TEST_MEMCACHE"), "Memcached host:port list for the memcache variant (empty: skip)")
	rounds := flag.Int("rounds", 3, "drive the variants in turn this many times and report each one's median round (drift in the machine's load then hits every variant alike)")
	flag.Parse()
	if *rounds < 1 || *conc < 1 || *duration <= 0 {
		log.Fatal("loadtest: -rounds and -c must be at least 1, -duration positive")
	}
	gin.SetMode(gin.ReleaseMode)

	vs := []variant{{name: "uncached"}, {name: "static+hdr", hitHeaders: true}, {name: "memory", backend: "memory://"}}
	if *redisAddr != "" {
		vs = append(vs, variant{name: "redis", backend: "redis://" + *redisAddr + "/0?timeout=1s"})
	}
	if *mcAddr != "" {
		vs = append(vs, variant{name: "memcache", backend: "memcache://" + *mcAddr + "?timeout=1s"})
	}
	results := make([][]result, len(vs))
	for range *rounds {
		for i, v := range vs {
			var res result
			var err error
			res.rps, res.p50, res.p99, res.origin, err = run(v, *duration, *conc)
			if err != nil {
				log.Fatalf("%s: %v", v.name, err)
			}
			results[i] = append(results[i], res)
		}
	}
	fmt.Printf("loadtest: %d clients over loopback, %s per variant, median of %d round(s)\n", *conc, *duration, *rounds)
	report(os.Stdout, vs, results)
}

// report prints each variant's median round (by requests/s) and, for the
// cached variants, their requests/s and p99 over the uncached variant's
// (the first): a req/s ratio above 1 and a p99 ratio below 1 mean the
// cache serves more, faster.
func report(w io.Writer, vs []variant, results [][]result) {
	fmt.Fprintf(w, "%-10s %12s %10s %10s %12s %11s %9s\n", "variant", "requests/s", "p50", "p99", "origin calls", "req/s ratio", "p99 ratio")
	var base result
	for i, v := range vs {
		rs := slices.Clone(results[i])
		slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.rps, b.rps) })
		med := rs[len(rs)/2] // the median round by requests/s
		ratios := ""
		if i == 0 {
			base = med
		} else if base.rps > 0 && base.p99 > 0 {
			ratios = fmt.Sprintf(" %10.2fx %8.2fx", med.rps/base.rps, float64(med.p99)/float64(base.p99))
		}
		fmt.Fprintf(w, "%-10s %12.0f %10s %10s %12d%s\n", v.name, med.rps, med.p50.Round(time.Microsecond), med.p99.Round(time.Microsecond), med.origin, ratios)
	}
}

func run(v variant, d time.Duration, conc int) (rps float64, p50, p99 time.Duration, origin int64, err error) {
	var calls atomic.Int64
	h := func(c *gin.Context) {
		calls.Add(1)
		if v.hitHeaders {
			for k, val := range hitHeaderSet {
				c.Writer.Header()[k] = []string{val}
			}
		}
		c.Data(http.StatusOK, "application/json", body)
	}
	r := gin.New()
	if v.backend == "" {
		r.GET("/articles/:id", h)
	} else {
		rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
			"articles": {Backend: v.backend, Prefix: fmt.Sprintf("lt%d", time.Now().UnixNano())},
		}})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		defer rc.Close()
		r.GET("/articles/:id", ginadapter.Cache(rc, "articles", core.Tags("article:{id}", "articles")), h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, 0, err
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	url := "http://" + ln.Addr().String() + "/articles/42?page=2"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	get := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil { // warm: fills the cache
		return 0, 0, 0, 0, err
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var failed atomic.Int64
	stop := time.Now().Add(d)
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(stop) {
				t0 := time.Now()
				if err := get(); err != nil {
					failed.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		return 0, 0, 0, 0, fmt.Errorf("%d requests failed", n)
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0, 0, 0, fmt.Errorf("no requests completed")
	}
	return float64(len(lat)) / elapsed.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], calls.Load(), nil
}
