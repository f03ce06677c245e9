package core

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// The request lifecycle, shared by cached routes and memoized values:
//
//	bypass → key → lookup → classify → replay (hit) | wait (flight) | fill → store → account
//
// Route.serve and load (memoize.go) check the bypasses and build the key,
// then hand a call to call.serve. What differs between the two is behind
// front: a route writes HTTP responses and runs its handler on the request's
// goroutine, streaming to the client; a memoized value is decoded, and its
// function runs in the background, its result shared by every caller.

// call is one request (or Load call) going through the lifecycle: the
// state every step needs, in one value.
type call struct {
	r  *Region
	rt *Route // the route asking; nil for a memoized value
	fr front
	// ctx is the caller's context: the request's, or Load's (a background
	// fill's call has it detached from the caller's cancellation).
	ctx       context.Context
	canonical string // the canonical key (the entry's key)
	skey      string // where the entry is stored
	// names are the counters the entry depends on; vals receives their
	// values at each read (lookup, lease poll, ensure).
	names []string
	vals  []uint64
	// fallback is a stale-if-error entry the call may answer with if its
	// fill fails.
	fallback *entry
	// fills is set when the call may fill and refresh (a HEAD only reads:
	// its response has no body to store for GET).
	fills bool
	// abandonAfter is the age past which a running flight of the key is
	// abandoned to a new one (flightGroup.join): a route's FillTimeout;
	// never for a memoized value, whose callers share its one background run.
	abandonAfter time.Duration
}

// front is what a cached route and a memoized value do differently; the
// lifecycle (call's methods) is shared.
type front interface {
	// replay answers the caller from e, counting ev (evHit, evCoalescedHit,
	// evStale or evStaleIfError), and reports whether it could: a memoized
	// value that does not decode cannot answer (it is then a miss).
	replay(c *call, e *entry, now int64, ev event) bool
	// accepts reports whether a stored entry may end a fill (a memoized
	// value must decode).
	accepts(e *entry) bool
	// bypass runs the producer uncached for the caller (the bypass is
	// counted already).
	bypass(c *call, reason string) error
	// detached reports whether fills and refreshes run in the background,
	// every caller (the leader too) answering from the flight's result,
	// rather than on the leader's goroutine.
	detached() bool
	// produce runs the producer once, on ctx (detached from the caller's
	// cancellation, bounded by FillTimeout), for a fill or a background
	// refresh, and returns its outcome and what to store.
	produce(c *call, ctx context.Context, refresh bool) produced
	// settle answers the caller from a landed flight whose entry it cannot
	// take (see outcome).
	settle(c *call, f *flight, o outcome) error
}

// outcome is why a call answers from its flight otherwise than with the
// flight's entry.
type outcome int

const (
	outOwn      outcome = iota // the leader whose fill ran the producer: its own result
	outFailed                  // the fill failed (5xx, error, panic, FillTimeout)
	outTimedOut                // the fill outlived this caller's FillTimeout
	outUnshared                // no entry this caller may take: not storable, or older than what it read
	outGone                    // the caller's context ended while it waited
)

func setBypass(w http.ResponseWriter, reason string) {
	h := w.Header()
	h["X-Cache"] = []string{"BYPASS"}
	h["Cache-Status"] = []string{"routecache; fwd=bypass; detail=" + reason}
}

func setMiss(rw *ResponseWriter) {
	h := rw.Header()
	h["X-Cache"] = []string{"MISS"}
	h["Cache-Status"] = []string{"routecache; fwd=uri-miss"}
}

// Serve runs the cache lifecycle for one request: look up, replay a hit,
// or run next (once per key in this process) and store its response when
// it is storable. pattern is the route pattern ("/articles/:id"); p gives
// the route's parameters. It returns next's error, if next ran.
func (rt *Route) Serve(w http.ResponseWriter, req *http.Request, p Params, pattern string, next Next) error {
	err := rt.serve(w, req, p, pattern, next)
	if errors.Is(err, ErrSkipStore) {
		return nil
	}
	return err
}

// serve is the route's entry into the lifecycle: the bypasses, the key,
// then call.serve.
func (rt *Route) serve(w http.ResponseWriter, req *http.Request, p Params, pattern string, next Next) error {
	r := rt.r
	reason := ""
	switch {
	case r.c.closed.Load():
		reason = BypassClosed
	default:
		reason = r.requestBypass(req)
		if reason == "" && !r.brk.allow() {
			reason = BypassBreaker
		}
	}
	if reason != "" {
		r.recordBypass(reason)
		setBypass(w, reason)
		return next(w, req)
	}
	st := getState()
	defer putState(st)
	st.front = routeFront{w: w, req: req, next: next}
	if !rt.build(st, req, p, pattern) {
		r.recordBypass(BypassKey)
		return st.front.bypass(nil, BypassKey)
	}
	canonical := unsafeString(st.key)
	st.call = call{
		r: r, rt: rt, fr: &st.front, ctx: req.Context(),
		canonical: canonical, skey: r.storageKeyIn(st, canonical),
		names: st.names, vals: st.vals,
		fills:        req.Method != http.MethodHead,
		abandonAfter: r.cfg.FillTimeout,
	}
	return st.call.serve()
}

// serve looks the key up and answers: a fresh entry is replayed (and
// maybe refreshed early), a stale one replayed and refreshed, and anything
// else is a miss.
func (c *call) serve() error {
	r := c.r
	e, err := c.lookup()
	if err != nil {
		r.recordBypass(BypassBackend)
		return c.fr.bypass(c, BypassBackend)
	}
	now := nowNano()
	if e != nil && e.freshUntil-now < int64(clockGuard) {
		// Near or past expiry: decide on the real clock, not the coarse one.
		now = time.Now().UnixNano()
	}
	switch c.classify(e, now) {
	case fresh:
		if c.fr.replay(c, e, now, evHit) {
			if r.cfg.EarlyRefresh > 0 && c.fills && xfetch(e, now, r.cfg.EarlyRefresh) {
				r.record(evEarlyRefresh)
				c.refresh()
			}
			return nil
		}
	case staleOK:
		// Stale-while-revalidate: answer now, then refresh once.
		if c.fr.replay(c, e, now, evStale) {
			if c.fills {
				c.refresh()
			}
			return nil
		}
	case errorOnly:
		// Past the stale window but within stale-if-error: the entry may
		// stand in for a failing producer, nothing more.
		c.fallback = e
	}
	if !c.fills {
		// A HEAD response has no body to store for GET; run it uncached.
		r.recordBypass(BypassHead)
		return c.fr.bypass(c, BypassHead)
	}
	return c.miss()
}

// miss joins the key's flight: its leader fills (on this goroutine, or in
// the background for a detached front), and every caller answers from
// the flight once it lands.
func (c *call) miss() error {
	f, leader := c.r.flights.join(c.skey, c.abandonAfter)
	if leader {
		if !c.fr.detached() {
			c.fill(f)
		} else if d := c.detach(); !c.r.c.bg.run(func() { d.fill(f) }) {
			// The Cache is closing: no new background work; the caller
			// runs its producer uncached.
			f.bypassed = true
			c.r.flights.land(c.skey, f)
		}
	}
	return c.await(f, leader)
}

// detach copies c for a fill or refresh in the background: its own
// counter values, and the caller's context without its cancellation.
func (c *call) detach() *call {
	d := *c
	d.vals = append([]uint64(nil), c.vals...)
	d.ctx = context.WithoutCancel(c.ctx)
	return &d
}

// staleIfError answers with the call's stale-if-error entry, if it has
// one that can answer.
func (c *call) staleIfError() bool {
	return c.fallback != nil && c.fr.replay(c, c.fallback, time.Now().UnixNano(), evStaleIfError)
}
