package prom

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

func newCache(t *testing.T, obs core.Observer) *core.Cache {
	t.Helper()
	rc, err := core.New(core.Config{
		Regions: map[string]core.RegionConfig{
			"articles": {},
			"short":    {TTL: time.Millisecond, Stale: time.Hour},
		},
		Observer: obs,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

type params map[string]string

func (p params) Get(n string) (string, bool) { v, ok := p[n]; return v, ok }

// script runs requests and memoized loads that touch every kind of count.
func script(t *testing.T, rc *core.Cache) {
	t.Helper()
	rt, err := rc.Route("articles", core.Tags("article:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(id string, hdr string, status int) {
		req := httptest.NewRequest("GET", "/articles/"+id, nil)
		if hdr != "" {
			k, v, _ := strings.Cut(hdr, ": ")
			req.Header.Set(k, v)
		}
		_ = adapter.ServeRoute(rt, httptest.NewRecorder(), req, params{"id": id}, "/articles/:id", func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(status)
			fmt.Fprint(w, "article ", id)
			return nil
		})
	}
	get("1", "", 200)                        // miss, store
	get("1", "", 200)                        // hit
	get("1", "", 200)                        // hit
	get("2", "", 200)                        // miss, store
	get("1", "Authorization: Bearer x", 200) // bypass authorization
	get("3", "", 500)                        // miss, not stored (status)
	ctx := context.Background()
	if err := rc.InvalidateTags(ctx, "article:1"); err != nil {
		t.Fatal(err)
	}
	get("1", "", 200) // miss again
	for i := 0; i < 3; i++ {
		if _, err := core.Load(ctx, rc, "short", "k", func(context.Context) (int, error) { return i, nil }); err != nil {
			t.Fatal(err)
		}
		// The first load stores; each later one is stale and stores from a
		// background refresh: wait for that store before going on, so the
		// next load finds no refresh still running for the key.
		deadline := time.Now().Add(time.Minute)
		for rc.Stats()["short"].Stores < uint64(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("load %d: its store did not land: %+v", i, rc.Stats()["short"])
			}
			runtime.Gosched()
		}
		time.Sleep(3 * time.Millisecond) // past the 1 ms TTL: the next load is stale
	}
}

// expected renders the counters as the exposition format, from Stats.
func expected(stats map[string]core.Stats) string {
	var b strings.Builder
	counter := func(name, help string, get func(core.Stats) uint64) {
		fmt.Fprintf(&b, "# HELP routecache_%s %s\n# TYPE routecache_%s counter\n", name, help, name)
		for _, r := range sortedRegions(stats) {
			fmt.Fprintf(&b, "routecache_%s{region=%q} %d\n", name, r, get(stats[r]))
		}
	}
	counter("hits_total", "Responses and memoized values served fresh from the cache.", func(s core.Stats) uint64 { return s.Hits })
	counter("misses_total", "Lookups that ran the handler or memoized function to fill the cache.", func(s core.Stats) uint64 { return s.Misses })
	counter("stale_total", "Stale entries served (stale-while-revalidate and stale-if-error).", func(s core.Stats) uint64 { return s.Stale })
	counter("stores_total", "Entries written to the backend.", func(s core.Stats) uint64 { return s.Stores })
	counter("invalidations_total", "Key, tag and region invalidations applied.", func(s core.Stats) uint64 { return s.Invalidations })
	counter("backend_errors_total", "Failed backend operations; the request ran uncached.", func(s core.Stats) uint64 { return s.Errors })
	counter("coalesced_total", "Hits served to callers that waited for another caller's fill.", func(s core.Stats) uint64 { return s.Coalesced })
	byReason := func(name, help string, reasons []string, get func(core.Stats) map[string]uint64) {
		fmt.Fprintf(&b, "# HELP routecache_%s %s\n# TYPE routecache_%s counter\n", name, help, name)
		for _, r := range sortedRegions(stats) {
			for _, reason := range reasons {
				fmt.Fprintf(&b, "routecache_%s{reason=%q,region=%q} %d\n", name, reason, r, get(stats[r])[reason])
			}
		}
	}
	byReason("bypasses_total", "Requests that skipped the cache, by reason.", reasonStrings(core.BypassReasons()), func(s core.Stats) map[string]uint64 { return byString(s.Bypasses) })
	byReason("not_stored_total", "Responses and memoized values not stored, by reason.", reasonStrings(core.NotStoredReasons()), func(s core.Stats) map[string]uint64 { return byString(s.NotStored) })
	fmt.Fprintf(&b, "# HELP routecache_breaker_open 1 while the backend's circuit breaker is open or half-open (probing), else 0.\n# TYPE routecache_breaker_open gauge\n")
	for _, r := range sortedRegions(stats) {
		open := 0
		if stats[r].Breaker != core.BreakerClosed {
			open = 1
		}
		fmt.Fprintf(&b, "routecache_breaker_open{region=%q} %d\n", r, open)
	}
	return b.String()
}

func sortedRegions(stats map[string]core.Stats) []string {
	out := make([]string, 0, len(stats))
	for r := range stats {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// After a scripted run the collected counters equal Stats().
func TestCollectorMatchesStats(t *testing.T) {
	rc := newCache(t, nil)
	col := NewCollector(rc)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	script(t, rc)

	stats := rc.Stats()
	a := stats["articles"]
	if a.Hits != 2 || a.Misses != 4 || a.Stores != 3 || a.Bypasses[core.BypassAuthorization] != 1 ||
		a.NotStored[core.NotStoredStatus] != 1 || a.Invalidations != 1 {
		t.Fatalf("the script did not do what it meant to: %+v", a)
	}
	if s := stats["short"]; s.Stale == 0 || s.Stores != 3 {
		t.Fatalf("short: %+v", s)
	}
	names := []string{
		"routecache_hits_total", "routecache_misses_total", "routecache_stale_total", "routecache_stores_total",
		"routecache_invalidations_total", "routecache_backend_errors_total", "routecache_coalesced_total",
		"routecache_bypasses_total", "routecache_not_stored_total", "routecache_breaker_open",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected(stats)), names...); err != nil {
		t.Fatal(err)
	}
	// The pedantic registry checked Describe against Collect; lint too.
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// countingObserver counts latency events per region and op.
type countingObserver struct {
	core.NopObserver
	mu sync.Mutex
	n  map[[2]string]uint64
}

func (c *countingObserver) BackendLatency(region string, op core.BackendOp, d time.Duration) {
	c.mu.Lock()
	c.n[[2]string{region, string(op)}]++
	c.mu.Unlock()
}

// The latency histogram holds one sample per timed backend operation.
func TestCollectorLatencyHistogram(t *testing.T) {
	counts := &countingObserver{n: map[[2]string]uint64{}}
	rc := newCache(t, counts)
	col := NewCollector(rc)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	script(t, rc)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var hist *dto.MetricFamily
	for _, mf := range mfs {
		if mf.GetName() == "routecache_backend_latency_seconds" {
			hist = mf
		}
	}
	if hist == nil || hist.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("no latency histogram: %v", hist)
	}
	seen := 0
	counts.mu.Lock()
	defer counts.mu.Unlock()
	for _, m := range hist.GetMetric() {
		var region, op string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "region":
				region = l.GetValue()
			case "op":
				op = l.GetValue()
			}
		}
		want := counts.n[[2]string{region, op}]
		if got := m.GetHistogram().GetSampleCount(); got != want {
			t.Errorf("%s/%s: %d samples, %d operations", region, op, got, want)
		}
		if want > 0 {
			seen++
		}
	}
	// Stores are timed once each.
	if counts.n[[2]string{"articles", "set"}] != rc.Stats()["articles"].Stores || counts.n[[2]string{"articles", "get"}] == 0 {
		t.Errorf("operations %v", counts.n)
	}
	if seen < 4 {
		t.Errorf("only %d series had samples", seen)
	}
}

// WithoutLatency exports no histogram and adds no observer.
func TestCollectorOptions(t *testing.T) {
	rc := newCache(t, nil)
	col := NewCollector(rc, WithoutLatency(), WithNamespace("app_cache"))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	script(t, rc)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "app_cache_") || strings.Contains(mf.GetName(), "latency") {
			t.Errorf("unexpected metric %s", mf.GetName())
		}
	}
	if got := testutil.CollectAndCount(col, "app_cache_hits_total"); got != 2 {
		t.Errorf("hits series: %d, want one per region", got)
	}
	rc2 := newCache(t, nil)
	col2 := NewCollector(rc2, WithBuckets([]float64{0.001, 1}))
	if _, err := core.Load(context.Background(), rc2, "articles", "k", func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(col2, "routecache_backend_latency_seconds"); n != 4 { // get and set of each region, from the start
		t.Errorf("latency series: %d", n)
	}
}

// Importing the package registers nothing.
func TestNothingRegisteredOnImport(t *testing.T) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "routecache_") {
			t.Fatalf("%s registered on import", mf.GetName())
		}
	}
}

// reasonStrings returns typed reasons as the label values they export as.
func reasonStrings[R ~string](rs []R) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

// byString re-keys a Stats map by the label values.
func byString[R ~string](m map[R]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for r, v := range m {
		out[string(r)] = v
	}
	return out
}
