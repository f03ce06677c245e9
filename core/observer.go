package core

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Observer receives the cache's events as they happen, for users who want
// more than the counters of Stats: tracing, custom metrics, sampling logs.
// Set one in Config.Observer or add one with Cache.AddObserver.
//
// Methods are called synchronously on the request's goroutine (or on the
// goroutine of a background refresh or memoized fill), so they must be
// fast, must not block and must be safe for concurrent use. Embed
// NopObserver to implement only the events you need.
//
// Every event names its region. The same events are counted in Stats,
// whether or not an Observer is set; a Cache without observers pays one
// nil check per event.
type Observer interface {
	// Hit is a response (or memoized value) served fresh from the cache,
	// including to a request that waited for another's fill.
	Hit(region string)
	// Stale is a stale entry served: within the Stale window
	// (stale-while-revalidate) or because the handler failed
	// (stale-if-error).
	Stale(region string)
	// Miss is a lookup that runs the handler (or memoized function) to
	// fill the cache.
	Miss(region string)
	// Bypass is a request that skipped the cache; reason is one of the
	// Bypass* constants.
	Bypass(region string, reason BypassReason)
	// Store is an entry written to the backend; bytes is the size of the
	// stored body (the encoded value, for memoization).
	Store(region string, bytes int)
	// NotStored is a response or value that was not stored; reason is one
	// of the NotStored* constants.
	NotStored(region string, reason NotStoredReason)
	// BackendError is a failed backend operation (the request ran
	// uncached). op names it: one of the Op* constants (OpGet, OpSet,
	// OpEnsureCounters, OpLease, OpInvalidateKey, ...).
	BackendError(region string, op BackendOp, err error)
	// BackendLatency is the duration of one backend operation, failed or
	// not. op is OpGet (a lookup: an entry and its counters, one round
	// trip) or OpSet (an entry stored).
	BackendLatency(region string, op BackendOp, d time.Duration)
}

// NopObserver implements every Observer method as a no-op. Embed it in a
// struct to implement only some events:
//
//	type misses struct{ core.NopObserver; n atomic.Int64 }
//	func (m *misses) Miss(string) { m.n.Add(1) }
type NopObserver struct{}

// Hit does nothing.
func (NopObserver) Hit(string) {}

// Stale does nothing.
func (NopObserver) Stale(string) {}

// Miss does nothing.
func (NopObserver) Miss(string) {}

// Bypass does nothing.
func (NopObserver) Bypass(string, BypassReason) {}

// Store does nothing.
func (NopObserver) Store(string, int) {}

// NotStored does nothing.
func (NopObserver) NotStored(string, NotStoredReason) {}

// BackendError does nothing.
func (NopObserver) BackendError(string, BackendOp, error) {}

// BackendLatency does nothing.
func (NopObserver) BackendLatency(string, BackendOp, time.Duration) {}

var _ Observer = NopObserver{}

// observerList fans every event out to several observers, in order.
type observerList []Observer

func (l observerList) Hit(region string) {
	for _, o := range l {
		o.Hit(region)
	}
}

func (l observerList) Stale(region string) {
	for _, o := range l {
		o.Stale(region)
	}
}

func (l observerList) Miss(region string) {
	for _, o := range l {
		o.Miss(region)
	}
}

func (l observerList) Bypass(region string, reason BypassReason) {
	for _, o := range l {
		o.Bypass(region, reason)
	}
}

func (l observerList) Store(region string, bytes int) {
	for _, o := range l {
		o.Store(region, bytes)
	}
}

func (l observerList) NotStored(region string, reason NotStoredReason) {
	for _, o := range l {
		o.NotStored(region, reason)
	}
}

func (l observerList) BackendError(region string, op BackendOp, err error) {
	for _, o := range l {
		o.BackendError(region, op, err)
	}
}

func (l observerList) BackendLatency(region string, op BackendOp, d time.Duration) {
	for _, o := range l {
		o.BackendLatency(region, op, d)
	}
}

// observerSlot holds a Cache's observers. The hot path loads one pointer
// and checks it for nil.
type observerSlot struct {
	mu sync.Mutex // serialises add
	p  atomic.Pointer[observerSet]
}

// observerSet is an immutable set of observers; o fans out to all of
// them, tracer to those that are Tracers too (nil if none: tracing.go).
type observerSet struct {
	list   []Observer
	o      Observer
	tracer Tracer
}

// get returns the current observers, or nil when there are none.
func (s *observerSlot) get() Observer {
	if set := s.p.Load(); set != nil {
		return set.o
	}
	return nil
}

func (s *observerSlot) add(o Observer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := &observerSet{}
	if old := s.p.Load(); old != nil {
		set.list = slices.Clone(old.list)
	}
	set.list = append(set.list, o)
	if len(set.list) == 1 {
		set.o = o
	} else {
		set.o = observerList(set.list)
	}
	set.tracer = tracersOf(set.list)
	s.p.Store(set)
}

// AddObserver adds o to the Cache's observers: it receives every event
// from then on, after the observers added before it (Config.Observer
// first). A nil o is ignored. Observers cannot be removed; a Prometheus
// collector (package prom) adds one to feed its latency histogram.
func (c *Cache) AddObserver(o Observer) {
	if o == nil {
		return
	}
	c.obs.add(o)
}

// obsStart returns the observers and the start time of a backend
// operation; without observers it returns nil and reads no clock.
func (r *Region) obsStart() (Observer, time.Time) {
	o := r.c.obs.get()
	if o == nil {
		return nil, time.Time{}
	}
	return o, time.Now()
}

// obsLatency reports a backend operation begun at start (see obsStart).
func (r *Region) obsLatency(o Observer, op BackendOp, start time.Time) {
	if o != nil {
		o.BackendLatency(r.name, op, time.Since(start))
	}
}
