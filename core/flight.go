package core

import (
	"strings"
	"sync"
	"time"
)

// flight is one in-process fill of a key. Requests for the key that arrive
// while it runs wait for it instead of calling the handler.
type flight struct {
	done chan struct{}
	// e is the stored entry, or nil when the response was not storable:
	// then each waiter runs the handler itself, since the leader's response
	// (a 500, a Set-Cookie, a personalised body) was not meant for them.
	e *entry
	// failed reports a failed handler (5xx, error, panic): waiters holding
	// a stale-if-error entry serve it instead of running the handler.
	failed bool
	// started is when the fill began (unix nanoseconds).
	started int64
}

type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

// join returns the flight for key and whether the caller leads it. A
// flight older than maxAge (a handler that ignores its context and runs
// past FillTimeout) is abandoned: the caller leads a new one, so that
// requests arriving later do not each wait maxAge for it. Its own waiters
// stop waiting at their FillTimeout; when it ends, it lands on its own.
func (g *flightGroup) join(key string, maxAge time.Duration) (*flight, bool) {
	now := time.Now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok && now-f.started < int64(maxAge) {
		return f, false
	}
	if g.m == nil {
		g.m = make(map[string]*flight)
	}
	f := &flight{done: make(chan struct{}), started: now}
	g.m[strings.Clone(key)] = f // key may view a pooled buffer
	return f, true
}

// land ends a flight with its result and releases the waiters.
func (g *flightGroup) land(key string, f *flight, e *entry) { g.landResult(key, f, e, false) }

// landResult is land with the handler's failure.
func (g *flightGroup) landResult(key string, f *flight, e *entry, failed bool) {
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	f.e, f.failed = e, failed
	close(f.done)
}
