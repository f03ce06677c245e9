package core

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/internal/testhook"
)

// failureMemory is how long a key whose contended fill failed keeps its
// failure (in this process): the requests for it meanwhile share that
// failure instead of calling the origin again; the first one after it
// fills. A fill nobody waited for leaves no memory: a lone request after
// a failure tries the origin again, as without a cache.
const failureMemory = time.Second

// flight is one in-process fill of a key (or refresh). Calls for the key
// that arrive while it runs wait for it instead of running the producer.
// Its result fields are written by the fill before done is closed.
type flight struct {
	// done is closed when the flight lands. It is made by the first call
	// that waits for it (flightGroup.doneOf), under flightGroup.mu: a
	// fill nobody waited for (the leader answers after landing it, on its
	// own goroutine) makes none. landed (guarded by flightGroup.mu)
	// reports the landing.
	done   chan struct{}
	landed bool
	// key is the flight's key, a copy of the caller's (which may view a
	// pooled buffer): the fill's call takes it as its own. tail is what
	// the leader had copied after it (joinWith): its counter names, when
	// the key is its canonical key too (see call.own).
	key, tail string
	// e is the entry the callers may answer from: stored (and, for a
	// route, checked against the counters after storing), found stored by
	// the fill, or a memoized value computed but not stored. nil: none.
	e *backend.Entry
	// snap is the counter snapshot the result was computed under (nil:
	// unknown, not shareable).
	snap []backend.CounterSnap
	// ran is set when the producer ran; val is its value (memoize), err
	// its error, panicked a recovered panic.
	ran      bool
	val      any
	err      error
	panicked any
	// failed reports a failed producer (5xx, error, panic, FillTimeout):
	// callers holding a stale-if-error entry serve it.
	failed bool
	// fail is what the waiters of a failed fill answer (nil: the failure
	// cannot be shared, an error the framework renders itself; then, as
	// after a successful response that was not storable, a Set-Cookie or a
	// personalised body not meant for them, each waiter runs the handler).
	fail *failure
	// bypassed is set when the fill could not use the cache (ensure
	// failed, or the Cache is closing): its leader runs the producer
	// uncached.
	bypassed bool
	// started is when the fill began (unix nanoseconds).
	started int64
	// until, once a failed flight landed, is when the key's failure memory
	// ends (guarded by flightGroup.mu; 0 while running).
	until int64
	// waiters counts the calls that joined the running flight (guarded
	// by flightGroup.mu).
	waiters int
	// listed reports that the group's map holds the flight under its key
	// (guarded by flightGroup.mu): landing needs no lookup to tell.
	listed bool
	// rec is the recorder of a request's fill, allocated with the flight
	// (one allocation less per miss), used by the leader alone: no
	// waiter reads it. A flight runs one fill, so it is never reused; it
	// is garbage once landed and left by its callers, as a recorder of
	// its own would be.
	rec recorder
}

// failure is a failed fill's response as the requests that waited for it
// (and those arriving within failureMemory after it) receive it: the
// origin's own 5xx with its replayable headers (never Set-Cookie) and body,
// or a plain 504 (FillTimeout) or 500 (panic). It is never stored.
type failure struct {
	status int
	header http.Header
	body   []byte
	detail string // for Cache-Status
}

// Cache-Status details of shared failures.
const (
	detailSharedFailure = "fill-failed"
	detailFillTimeout   = "fill-timeout"
)

// plainFailure is a failure with a plain-text body: the status text.
func plainFailure(status int, detail string) *failure {
	return &failure{
		status: status,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Content-Type-Options": {"nosniff"}},
		body:   []byte(http.StatusText(status) + "\n"),
		detail: detail,
	}
}

// replayFailure writes a shared failure, with X-Cache: MISS.
func replayFailure(w http.ResponseWriter, req *http.Request, f *failure) {
	h := w.Header()
	for k, v := range f.header {
		h[k] = slices.Clone(v)
	}
	h["X-Cache"] = []string{"MISS"}
	h["Cache-Status"] = []string{"routecache; fwd=uri-miss; detail=" + f.detail}
	w.WriteHeader(f.status)
	if req.Method != http.MethodHead && len(f.body) > 0 {
		_, _ = w.Write(f.body)
	}
}

type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
	// memory is the failure memory (failureMemory; tests shorten it).
	memory time.Duration
}

// join returns the flight for key and whether the caller leads it. A
// flight older than maxAge (0: never) (a handler that ignores its context and runs
// past FillTimeout) is abandoned: the caller leads a new one, so that
// requests arriving later do not each wait maxAge for it. Its own waiters
// stop waiting at their FillTimeout; when it ends, it lands on its own.
// A contended flight that failed within the failure memory is returned as
// landed: the caller shares its failure.
func (g *flightGroup) join(key string, maxAge time.Duration) (*flight, bool) {
	return g.joinWith(key, maxAge, nil)
}

// joinWith is join; a new flight's copy of the key is made with tail
// (the strings joined) after it, in the same allocation (flight.tail).
func (g *flightGroup) joinWith(key string, maxAge time.Duration, tail []string) (*flight, bool) {
	now := time.Now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		if f.until != 0 {
			if now < f.until {
				return f, false
			}
		} else if maxAge == 0 || now-f.started < int64(maxAge) {
			f.waiters++
			return f, false
		}
		f.listed = false // abandoned, or its failure memory ended: replaced
	}
	if g.m == nil {
		g.m = make(map[string]*flight)
	}
	f := &flight{started: now, listed: true}
	if len(tail) == 0 {
		f.key = strings.Clone(key) // key may view a pooled buffer
	} else {
		var b strings.Builder
		b.Grow(len(key) + textLen(tail))
		b.WriteString(key)
		for _, t := range tail {
			b.WriteString(t)
		}
		all := b.String()
		f.key, f.tail = all[:len(key)], all[len(key):]
	}
	g.m[f.key] = f
	return f, true
}

// land ends a flight with the result its fill left in it and releases
// the waiters. A shareable failure of a flight that had waiters (a
// stampede on a failing key) stays in the group for the failure memory.
// key must not view a pooled buffer.
func (g *flightGroup) land(key string, f *flight) {
	if !f.failed || f.e != nil {
		f.fail = nil
	}
	g.mu.Lock()
	if f.listed { // g.m[key] == f
		if f.fail != nil && f.waiters > 0 && g.memory > 0 {
			f.until = time.Now().Add(g.memory).UnixNano()
			time.AfterFunc(g.memory, func() { g.forget(key, f) })
		} else {
			delete(g.m, key)
			f.listed = false
		}
	}
	f.landed = true
	done := f.done
	g.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// closedDone is the done channel of a flight that landed before anyone
// asked for it.
var closedDone = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// doneOf returns the channel closed when f lands (closed already if it
// did), making it if need be.
func (g *flightGroup) doneOf(f *flight) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case f.done != nil:
	case f.landed:
		return closedDone
	default:
		f.done = make(chan struct{})
	}
	return f.done
}

// forget ends a failed flight's memory.
func (g *flightGroup) forget(key string, f *flight) {
	g.mu.Lock()
	if f.listed {
		delete(g.m, key)
		f.listed = false
	}
	g.mu.Unlock()
}

// await waits for the key's flight to land (a leader's detached fill, or
// another call's) and answers from it: the flight's entry if this call may
// take it, else the front settles (stale-if-error first, for a failure).
func (c *call) await(f *flight, leader bool, next nextFunc) error {
	r := c.r
	timedOut := false
	done := r.flights.doneOf(f)
	select {
	case <-done:
	default:
		var gone bool
		if gone, timedOut = c.wait(done, leader); gone {
			return c.settle(f, outGone, next)
		}
	}
	return c.answer(f, leader, timedOut, next)
}

// answer is await's answer once the flight landed, or once the caller
// stopped waiting for it (timedOut).
func (c *call) answer(f *flight, leader, timedOut bool, next nextFunc) error {
	r := c.r
	switch {
	case timedOut:
		if c.staleIfError() {
			return nil
		}
		return c.settle(f, outTimedOut, next)
	case leader && f.ran:
		return c.settle(f, outOwn, next)
	case leader && f.bypassed:
		return c.bypass(BypassBackend, next)
	case f.failed && f.e == nil:
		if c.staleIfError() {
			return nil
		}
		return c.settle(f, outFailed, next)
	}
	// The fill checked its entry against the counters, but an invalidation
	// may have completed between that check and this call's own lookup:
	// the entry must also match what this call read, or it predates an
	// invalidation this call already saw.
	if f.e == nil || !snapshotAgrees(f.snap, c.names, c.vals) || !c.othersAgree(f.snap) || r.invalidationPending() {
		return c.settle(f, outUnshared, next)
	}
	ev := evCoalescedHit
	if leader {
		ev = evHit
	}
	if !c.replay(f.e, time.Now().UnixNano(), ev) {
		return c.settle(f, outUnshared, next)
	}
	return nil
}

// wait waits for a flight's done channel, not closed yet, at most the
// region's FillTimeout: gone when the caller's context ended first,
// timedOut when the fill outlived FillTimeout (a producer ignoring its
// context; the caller then stops waiting for it, as for a failed fill).
// Its defers are here, not in await: a function with as many returns as
// await and a defer runs its defers through runtime.deferreturn, which
// every miss (whose leader's flight has landed) would pay for nothing.
func (c *call) wait(done <-chan struct{}, leader bool) (gone, timedOut bool) {
	if !leader && testhook.Enter(testhook.Flight) {
		defer testhook.Leave(testhook.Flight)
	}
	timer := time.NewTimer(c.r.cfg.FillTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return false, false
	case <-c.ctx.Done():
		return true, false
	case <-timer.C:
		return false, true
	}
}

// snapshotAgrees reports whether a result's counter snapshot agrees with
// the values a waiting call read. A counter that call found missing (0)
// is not judged here (othersAgree reads it again): missing, it was either
// never created (the producer created it, and its snapshot holds the new
// value) or evicted after an invalidation, and the value alone does not
// tell which. Any other counter it read must be in the snapshot: a
// producer on another route sharing the key may not have read it.
func snapshotAgrees(snap []backend.CounterSnap, names []string, vals []uint64) bool {
	if snap == nil {
		return false
	}
	for i, n := range names {
		if vals[i] == 0 {
			continue // read again by othersAgree, if the snapshot names it
		}
		found := false
		for _, c := range snap {
			if c.Name == n {
				if c.Value != vals[i] {
					return false
				}
				found = true
				break
			}
		}
		if !found {
			return false // a counter the producer did not read (another route's tag)
		}
	}
	return true
}

// othersAgree reports whether the counters of a result's snapshot that
// the call holds no value for still hold their snapshot values, read now.
// Those are the runtime tags its producer added (not among the call's
// counters: the fill checked them after storing, but a tag invalidation
// may have completed since, before this call looked up), and the counters
// the call found missing but the producer read: created by the fill since
// the call looked, they still hold the snapshot's value; evicted (or
// expired) after an invalidation that completed before the call looked,
// they no longer do, and the result predates that invalidation.
func (c *call) othersAgree(snap []backend.CounterSnap) bool {
	n := 0
	for _, s := range snap {
		if c.unread(s) {
			n++
		}
	}
	if n == 0 {
		return true
	}
	others := make([]backend.CounterSnap, 0, n)
	for _, s := range snap {
		if c.unread(s) {
			others = append(others, s)
		}
	}
	return c.validRuntime(others)
}

// unread reports whether the call holds no value of the snapshot's
// counter s to compare with: not among its counters, or read missing (0)
// where the producer read a value.
func (c *call) unread(s backend.CounterSnap) bool {
	i := slices.Index(c.names, s.Name)
	return i < 0 || c.vals[i] == 0 && s.Value != 0
}

// background tracks the fills and refreshes running in the background
// (memoize's), so that Close can wait for them.
type background struct {
	mu      sync.Mutex
	active  int           // running
	closing bool          // Close began: nothing new starts
	idle    chan struct{} // closed when active drops to 0 while closing
}

// run starts fn on a goroutine of its own; false once the Cache is
// closing (fn does not run).
func (g *background) run(fn func()) bool {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return false
	}
	g.active++
	g.mu.Unlock()
	go func() {
		defer g.done()
		fn()
	}()
	return true
}

func (g *background) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// closeAndWait refuses new background work and waits for the running
// work, at most bound, so that none uses a closed backend.
func (g *background) closeAndWait(bound time.Duration) {
	g.mu.Lock()
	g.closing = true
	if g.active == 0 {
		g.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C: // a function ignoring its context: do not hang Close on it
	}
}
