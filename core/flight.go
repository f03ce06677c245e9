package core

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// failureMemory is how long a key whose contended fill failed keeps its
// failure (in this process): the requests for it meanwhile share that
// failure instead of calling the origin again; the first one after it
// fills. A fill nobody waited for leaves no memory: a lone request after
// a failure tries the origin again, as without a cache.
const failureMemory = time.Second

// flight is one in-process fill of a key. Requests for the key that arrive
// while it runs wait for it instead of calling the handler.
type flight struct {
	done chan struct{}
	// e is the stored entry, or nil when the response was not storable.
	e *backend.Entry
	// failed reports a failed handler (5xx, error, panic, FillTimeout):
	// waiters holding a stale-if-error entry serve it.
	failed bool
	// fail is what the waiters of a failed fill answer (nil: the failure
	// cannot be shared, an error the framework renders itself; then, as
	// after a successful response that was not storable, a Set-Cookie or a
	// personalised body not meant for them, each waiter runs the handler).
	fail *failure
	// started is when the fill began (unix nanoseconds).
	started int64
	// until, once a failed flight landed, is when the key's failure memory
	// ends (guarded by flightGroup.mu; 0 while running).
	until int64
	// waiters counts the requests that joined the running flight (guarded
	// by flightGroup.mu).
	waiters int
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
// flight older than maxAge (a handler that ignores its context and runs
// past FillTimeout) is abandoned: the caller leads a new one, so that
// requests arriving later do not each wait maxAge for it. Its own waiters
// stop waiting at their FillTimeout; when it ends, it lands on its own.
// A contended flight that failed within the failure memory is returned as
// landed: the caller shares its failure.
func (g *flightGroup) join(key string, maxAge time.Duration) (*flight, bool) {
	now := time.Now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		if f.until != 0 {
			if now < f.until {
				return f, false
			}
		} else if now-f.started < int64(maxAge) {
			f.waiters++
			return f, false
		}
	}
	if g.m == nil {
		g.m = make(map[string]*flight)
	}
	f := &flight{done: make(chan struct{}), started: now}
	g.m[strings.Clone(key)] = f // key may view a pooled buffer
	return f, true
}

// land ends a flight with its result and releases the waiters.
func (g *flightGroup) land(key string, f *flight, e *backend.Entry) {
	g.landResult(key, f, e, false, nil)
}

// landResult is land with the handler's failure, and what its waiters
// answer for it. A shareable failure of a flight that had waiters (a
// stampede on a failing key) stays in the group for the failure memory.
// key must not view a pooled buffer.
func (g *flightGroup) landResult(key string, f *flight, e *backend.Entry, failed bool, fail *failure) {
	if !failed || e != nil {
		fail = nil
	}
	f.e, f.failed, f.fail = e, failed, fail
	g.mu.Lock()
	if g.m[key] == f {
		if fail != nil && f.waiters > 0 && g.memory > 0 {
			f.until = time.Now().Add(g.memory).UnixNano()
			time.AfterFunc(g.memory, func() { g.forget(key, f) })
		} else {
			delete(g.m, key)
		}
	}
	g.mu.Unlock()
	close(f.done)
}

// forget ends a failed flight's memory.
func (g *flightGroup) forget(key string, f *flight) {
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
}
