package core

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// recObserver counts every event it receives (a twin of the black-box
// tests' recObserver in observer_test.go).
type recObserver struct {
	mu                             sync.Mutex
	hits, stale, misses, stores    map[string]uint64 // by region
	storedBytes                    int
	bypass                         map[BypassReason]uint64    // by reason
	notStored                      map[NotStoredReason]uint64 // by reason
	backendErrs, latency           map[string]uint64          // by op
	regionsSeen                    map[string]bool
	negativeLatency, nilBackendErr bool
}

func newRecObserver() *recObserver {
	return &recObserver{
		hits: map[string]uint64{}, stale: map[string]uint64{}, misses: map[string]uint64{}, stores: map[string]uint64{},
		bypass: map[BypassReason]uint64{}, notStored: map[NotStoredReason]uint64{}, backendErrs: map[string]uint64{}, latency: map[string]uint64{},
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
func (o *recObserver) Bypass(region string, reason BypassReason) {
	recAdd(o, o.bypass, reason, region)
}
func (o *recObserver) Store(region string, n int) {
	o.add(o.stores, region, region)
	o.mu.Lock()
	o.storedBytes += n
	o.mu.Unlock()
}
func (o *recObserver) NotStored(region string, reason NotStoredReason) {
	recAdd(o, o.notStored, reason, region)
}
func (o *recObserver) BackendError(region string, op BackendOp, err error) {
	if err == nil {
		o.mu.Lock()
		o.nilBackendErr = true
		o.mu.Unlock()
	}
	o.add(o.backendErrs, string(op), region)
}
func (o *recObserver) BackendLatency(region string, op BackendOp, d time.Duration) {
	if d < 0 {
		o.mu.Lock()
		o.negativeLatency = true
		o.mu.Unlock()
	}
	o.add(o.latency, string(op), region)
}

// discardWriter is an http.ResponseWriter that allocates nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(int) {}

func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// An observer adds no allocation to the hit path, and without one the
// hit path pays only a nil check.
func TestObserverHitPathAllocs(t *testing.T) {
	// The observer's own calls allocate nothing, with or without observers.
	for _, o := range []Observer{nil, NopObserver{}, newRecObserver()} {
		c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}, Observer: o, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		r := c.regions["r"]
		if o, ok := o.(*recObserver); ok {
			// Warm the maps so that counting allocates nothing.
			o.Hit("r")
			o.BackendLatency("r", "get", 0)
		}
		n := testing.AllocsPerRun(100, func() {
			ob, t0 := r.obsStart()
			r.obsLatency(ob, "get", t0)
			r.record(evHit)
			r.recordBypass(BypassCookie)
		})
		c.Close()
		if n != 0 {
			t.Errorf("observer %T: %v allocations per event", o, n)
		}
	}
	if observerTestRace {
		t.Log("the whole hit path is compared without -race only (sync.Pool drops items at random under -race)")
		return
	}
	without, with := hitPathAllocs(t, nil), hitPathAllocs(t, NopObserver{})
	if with != without {
		t.Fatalf("hit path allocations: %v with an observer, %v without", with, without)
	}
}

// hitPathAllocs is the allocations of one memory hit through a route with
// a templated tag, in a Cache with Observer o (nil: none).
func hitPathAllocs(t *testing.T, o Observer) float64 {
	t.Helper()
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}, Observer: o, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("r", Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/items/1", nil)
	p := mapParams{"id": "1"}
	next := func(w http.ResponseWriter, r *http.Request) error { _, err := io.WriteString(w, "body"); return err }
	w := &discardWriter{h: http.Header{}}
	_ = rt.handle(w, req, p, "/items/:id", next) // fill
	return testing.AllocsPerRun(200, func() {
		clear(w.h)
		if err := rt.handle(w, req, p, "/items/:id", next); err != nil {
			t.Fatal(err)
		}
	})
}
