package core_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// recObserver counts every event it receives.
type recObserver struct {
	mu                             sync.Mutex
	hits, stale, misses, stores    map[string]uint64 // by region
	storedBytes                    int
	bypass                         map[core.BypassReason]uint64    // by reason
	notStored                      map[core.NotStoredReason]uint64 // by reason
	backendErrs, latency           map[string]uint64               // by op
	regionsSeen                    map[string]bool
	negativeLatency, nilBackendErr bool
}

func newRecObserver() *recObserver {
	return &recObserver{
		hits: map[string]uint64{}, stale: map[string]uint64{}, misses: map[string]uint64{}, stores: map[string]uint64{},
		bypass: map[core.BypassReason]uint64{}, notStored: map[core.NotStoredReason]uint64{}, backendErrs: map[string]uint64{}, latency: map[string]uint64{},
		regionsSeen: map[string]bool{},
	}
}

func (o *recObserver) add(m map[string]uint64, k, region string) { recAdd(o, m, k, region) }

func recAdd[K ~string](o *recObserver, m map[K]uint64, k K, region string) {
	o.mu.Lock()
	m[k]++
	o.regionsSeen[region] = true
	o.mu.Unlock()
}

func (o *recObserver) Hit(region string)   { o.add(o.hits, region, region) }
func (o *recObserver) Stale(region string) { o.add(o.stale, region, region) }
func (o *recObserver) Miss(region string)  { o.add(o.misses, region, region) }
func (o *recObserver) Bypass(region string, reason core.BypassReason) {
	recAdd(o, o.bypass, reason, region)
}
func (o *recObserver) Store(region string, n int) {
	o.add(o.stores, region, region)
	o.mu.Lock()
	o.storedBytes += n
	o.mu.Unlock()
}
func (o *recObserver) NotStored(region string, reason core.NotStoredReason) {
	recAdd(o, o.notStored, reason, region)
}
func (o *recObserver) BackendError(region string, op core.BackendOp, err error) {
	if err == nil {
		o.mu.Lock()
		o.nilBackendErr = true
		o.mu.Unlock()
	}
	o.add(o.backendErrs, string(op), region)
}
func (o *recObserver) BackendLatency(region string, op core.BackendOp, d time.Duration) {
	if d < 0 {
		o.mu.Lock()
		o.negativeLatency = true
		o.mu.Unlock()
	}
	o.add(o.latency, string(op), region)
}

// After a scripted run of routes and memoized loads, the observer saw
// exactly what Stats counted.
func TestObserverMatchesStats(t *testing.T) {
	obs := newRecObserver()
	c, err := core.New(core.Config{
		Regions:  map[string]core.RegionConfig{"r": {TTL: time.Millisecond, Stale: time.Hour}, "long": {}},
		Observer: obs,
		Logger:   quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("long", core.Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(target string, hdr map[string]string, status int) string {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", target, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		_ = adapter.ServeRoute(rt, w, req, mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(status)
			fmt.Fprint(w, "body")
			return nil
		})
		return w.Header().Get("X-Cache")
	}
	ctx := context.Background()
	script := []struct {
		target string
		hdr    map[string]string
		status int
		want   string
	}{
		{"/items/1", nil, 200, "MISS"},
		{"/items/1", nil, 200, "HIT"},
		{"/items/1", nil, 200, "HIT"},
		{"/items/1", map[string]string{"Authorization": "Bearer x"}, 200, "BYPASS"},
		{"/items/1", map[string]string{"Cookie": "session=1"}, 200, "BYPASS"},
		{"/items/2", nil, 500, "MISS"},
		{"/items/3", nil, 404, "MISS"},
	}
	for _, s := range script {
		if got := get(s.target, s.hdr, s.status); got != s.want {
			t.Fatalf("%s: X-Cache %q, want %q", s.target, got, s.want)
		}
	}
	// Memoized values report the same events.
	for i := 0; i < 2; i++ {
		if _, err := core.Load(ctx, c, "long", "k", func(context.Context) (int, error) { return 1, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := core.Load(ctx, c, "r", "s", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the 1 ms TTL: the next load is stale
	if _, err := core.Load(ctx, c, "r", "s", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	memoPoll(t, "refresh stored", func() bool { return c.Stats()["r"].Stores == 2 })

	obs.mu.Lock()
	defer obs.mu.Unlock()
	for name, st := range c.Stats() {
		if obs.hits[name] != st.Hits || obs.misses[name] != st.Misses || obs.stores[name] != st.Stores || obs.stale[name] != st.Stale {
			t.Errorf("region %s: observer hits/misses/stores/stale %d/%d/%d/%d, Stats %d/%d/%d/%d", name,
				obs.hits[name], obs.misses[name], obs.stores[name], obs.stale[name], st.Hits, st.Misses, st.Stores, st.Stale)
		}
	}
	long := c.Stats()["long"]
	if long.Hits != 3 || long.Misses != 4 || long.Stores != 2 { // routes 2 hits, 3 misses; memo 1 of each
		t.Errorf("long: %+v", long)
	}
	if !maps.Equal(obs.bypass, long.Bypasses) {
		t.Errorf("bypasses: observer %v, Stats %v", obs.bypass, long.Bypasses)
	}
	if !maps.Equal(obs.notStored, long.NotStored) || obs.notStored[core.NotStoredStatus] != 2 {
		t.Errorf("not stored: observer %v, Stats %v", obs.notStored, long.NotStored)
	}
	// Every lookup and every store is timed; nothing failed.
	if obs.latency["set"] != obs.stores["long"]+obs.stores["r"] || obs.latency["get"] == 0 || obs.negativeLatency {
		t.Errorf("latency events %v (stores %v)", obs.latency, obs.stores)
	}
	if len(obs.backendErrs) != 0 || obs.storedBytes == 0 {
		t.Errorf("backend errors %v, stored bytes %d", obs.backendErrs, obs.storedBytes)
	}
	if !obs.regionsSeen["long"] || !obs.regionsSeen["r"] || len(obs.regionsSeen) != 2 {
		t.Errorf("regions %v", obs.regionsSeen)
	}
}

// Backend errors reach the observer with their operation and error, as
// many as Stats.Errors counts.
func TestObserverBackendErrors(t *testing.T) {
	obs := newRecObserver()
	c, err := core.New(core.Config{
		Regions: map[string]core.RegionConfig{"r": {Backend: "redis://127.0.0.1:1/0?timeout=100ms"}},
		Logger:  quietLogger(),
		Breaker: core.BreakerConfig{Failures: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.AddObserver(obs)
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		w := httptest.NewRecorder()
		_ = adapter.ServeRoute(rt, w, httptest.NewRequest("GET", "/x", nil), noParams, "/x", func(w http.ResponseWriter, r *http.Request) error {
			fmt.Fprint(w, "ok")
			return nil
		})
		if w.Body.String() != "ok" || w.Header().Get("X-Cache") != "BYPASS" {
			t.Fatalf("dead backend: %q %q", w.Header().Get("X-Cache"), w.Body.String())
		}
	}
	if err := c.InvalidateRegion(context.Background(), "r"); err == nil {
		t.Fatal("InvalidateRegion on a dead backend: no error")
	}
	st := c.Stats()["r"]
	obs.mu.Lock()
	defer obs.mu.Unlock()
	var total uint64
	for _, n := range obs.backendErrs {
		total += n
	}
	if total != st.Errors || obs.backendErrs["get"] != 2 || obs.backendErrs["invalidate-region"] != 1 || obs.nilBackendErr {
		t.Errorf("observer errors %v (total %d), Stats.Errors %d", obs.backendErrs, total, st.Errors)
	}
	if obs.latency["get"] != 2 || obs.bypass[core.BypassBackend] != 2 {
		t.Errorf("latency %v bypass %v", obs.latency, obs.bypass)
	}
}

// Observers added later receive events from then on, after earlier ones.
func TestObserverAddObserver(t *testing.T) {
	first, second := newRecObserver(), newRecObserver()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}, Observer: first, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	load := func() {
		if _, err := core.Load(context.Background(), c, "r", "k", func(context.Context) (int, error) { return 1, nil }); err != nil {
			t.Fatal(err)
		}
	}
	load() // miss
	c.AddObserver(second)
	c.AddObserver(nil) // ignored
	load()             // hit
	if first.misses["r"] != 1 || first.hits["r"] != 1 || second.misses["r"] != 0 || second.hits["r"] != 1 {
		t.Fatalf("first %v/%v second %v/%v", first.misses, first.hits, second.misses, second.hits)
	}
	var _ core.Observer = core.NopObserver{}
}
