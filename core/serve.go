package core

import (
	"context"
	"net/http"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/memory"
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
	// route is a route's front, fr a memoized value's (the other is nil):
	// see front.
	route *routeFront
	fr    front
	// ctx is the caller's context: the request's, or Load's (a background
	// fill's call has it detached from the caller's cancellation).
	ctx       context.Context
	canonical string // the canonical key (the entry's key)
	skey      string // where the entry is stored
	// names are the counters the entry depends on; vals receives their
	// values at each read (lookup, lease poll, ensure).
	names []string
	vals  []uint64
	// namesText is the names concatenated, in a string of the call's own
	// (made with the owned keys when it leads a fill: see own).
	namesText string
	// namesOwned is the names slice own copied into namesText, for the
	// fill it leads (nil otherwise): see sameSlice.
	namesOwned []string
	// fallback is a stale-if-error entry the call may answer with if its
	// fill fails.
	fallback *backend.Entry
	// st is a route's request state (its tags' texts: see tagTexts); nil
	// for a memoized value.
	st *reqState
	// rtags collects a route fill's runtime tags (AddTags, TagHeaders).
	rtags *tagSet
	// fills is set when the call may fill and refresh (a HEAD only reads:
	// its response has no body to store for GET).
	fills bool
	// epoch is the tag epoch read before the producer ran (epochOK: it
	// was read); see runtimetags.go.
	epoch   uint64
	epochOK bool
	// xnames and xvals are scratch for reading an entry's runtime tags'
	// counters on a hit (call.validRuntime), and the counters a fill
	// ensures and checks (call.scratch), kept with the pooled call.
	xnames []string
	xvals  []uint64
	// abandonAfter is the age past which a running flight of the key is
	// abandoned to a new one (flightGroup.join): a route's FillTimeout;
	// never for a memoized value, whose callers share its one background run.
	abandonAfter time.Duration
}

// What a cached route and a memoized value do differently is a pair of
// small types, routeFront (hit.go) and memoFront (memoize.go), with the
// same operations; the lifecycle (call's methods) is shared and reaches
// them through call.replay, accepts, bypass, runProducer and settle. A
// route's are called directly, with its handler (next) passed down the
// call chain as an argument: stored in the pooled call, or passed through
// an interface, the adapters' per-request closure would escape and every
// hit would allocate. A memoized value's, generic in its type, go through
// the front interface.
type front interface {
	// replay answers the caller from e, counting ev (evHit, evCoalescedHit,
	// evStale or evStaleIfError), and reports whether it could: a memoized
	// value that does not decode cannot answer (it is then a miss).
	replay(c *call, e *backend.Entry, now int64, ev event) bool
	// accepts reports whether a stored entry may end a fill (a memoized
	// value must decode).
	accepts(e *backend.Entry) bool
	// bypass runs the producer uncached for the caller (the bypass is
	// counted already).
	bypass(c *call, reason BypassReason) error
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

func setBypass(w http.ResponseWriter, reason BypassReason) {
	h := w.Header()
	h["X-Cache"] = []string{"BYPASS"}
	h["Cache-Status"] = []string{"routecache; fwd=bypass; detail=" + string(reason)}
}

// setMiss marks a response the cache did not answer. A fill's recorder
// knows its region: its Cache-Status then says (RFC 9211) "stored" when
// the response is storable as its headers go out, or the reason it is not
// in detail=, so that curl -i tells why a route is not cached. A body
// that outgrows MaxEntryBytes after the headers went out, runtime tags
// past MaxTags added after them, a tag invalidation during the fill, or
// a store that fails, leave it not stored despite "stored" (counted in
// Stats.NotStored).
func setMiss(rw *recorder) {
	h := rw.Header()
	c := rw.fill
	if c == nil {
		h["X-Cache"], h["Cache-Status"] = xCacheMiss, missPlain
		return
	}
	// The verdict is kept for the entry (routeFront.produce): the headers
	// are judged once. What setMiss adds changes none of it: X-Cache and
	// Cache-Status, never stored, are read by no rule, and are canonical
	// (they leave the headers canonical or not, as they were), so they are
	// set after the judging pass, which then has two keys fewer to walk.
	// Unless more headers are added after it (CDN headers, a compressing
	// region's Vary), the recorder's snapshot is taken in the same pass.
	r := c.r
	var ea *entryAlloc
	if rw.record && !r.cfg.CDNHeaders && !r.cfg.Compress {
		ea = rw.alloc()
	}
	v, ch, t := r.judgeSnapshot(c.rt, rw.status, rw.before, h, ea)
	h["X-Cache"] = xCacheMiss
	rw.verdict = v
	if ea != nil {
		rw.snapshot, rw.snapClean, rw.snapKeys, rw.snapTaken = t.snap, t.keys&snapUnclean == 0, t.keys, true
		rw.list, rw.listMem, rw.listed = t.list, t.mem, true
	}
	reason := r.commitReason(v, ch)
	if reason == "" && c.rtags != nil && c.rtags.isOver() {
		// Runtime tags added before the headers went out (AddTags, the
		// tag headers just taken) already number more than MaxTags.
		reason = NotStoredTooManyTags
	}
	if reason != "" {
		h["Cache-Status"] = []string{"routecache; fwd=uri-miss; detail=" + string(reason)}
		return
	}
	h["Cache-Status"] = missStored
	if r.cfg.CDNHeaders {
		c.setCDNHeaders(h, v.life)
	}
}

// The header values setMiss sets, shared by every miss (read-only; len ==
// cap, so an append by later code copies instead of writing into them).
var (
	xCacheMiss = []string{"MISS"}
	missPlain  = []string{"routecache; fwd=uri-miss"}
	missStored = []string{"routecache; fwd=uri-miss; stored"}
)

// serve is the route's entry into the lifecycle: the bypasses, the key,
// then call.serve. The route's parameters are p, or when cp is not nil
// cp's (copied into the request's state). A route that may answer a hit
// from its key alone (keyedHits) goes to serveKeyed, which checks the
// bypasses itself: one call less on its hits.
func (rt *Route) serve(w http.ResponseWriter, req *http.Request, p params, cp *ctxParams, pattern string, next nextFunc) error {
	if rt.keyedHits {
		return rt.serveKeyed(w, req, p, cp, pattern, next)
	}
	if reason := rt.bypassReason(req); reason != "" {
		return rt.serveBypass(w, req, reason, next)
	}
	return rt.serveGeneral(w, req, p, cp, pattern, next)
}

// serveBypass runs next uncached, for reason.
func (rt *Route) serveBypass(w http.ResponseWriter, req *http.Request, reason BypassReason, next nextFunc) error {
	rt.r.recordBypassIn(req.Context(), reason, false)
	setBypass(w, reason)
	return next(w, req)
}

// serveGeneral is serve past the bypasses, the general way: the key and
// counter names built in a pooled state, then call.serve.
func (rt *Route) serveGeneral(w http.ResponseWriter, req *http.Request, p params, cp *ctxParams, pattern string, next nextFunc) error {
	// The state goes back to the pool when the call returns, not deferred:
	// a handler's panic leaves it to the collector, unpooled.
	st := rt.getState(cp, &p)
	if !rt.build(st, req, p, pattern) {
		return rt.bypassKey(st, w, req, next)
	}
	err := rt.call(st, w, req).serve(next)
	putState(st)
	return err
}

// getState takes a request state from the pool; when cp is not nil, its
// parameters are copied into it and *p points to them.
func (rt *Route) getState(cp *ctxParams, p *params) *reqState {
	st := getState()
	if cp != nil {
		st.params = *cp
		*p = &st.params
	}
	return st
}

// call sets up the request's call in st, its key and names built.
func (rt *Route) call(st *reqState, w http.ResponseWriter, req *http.Request) *call {
	r := rt.r
	// Field by field: the state is pooled (putState cleared what it must),
	// and one store per field costs less than copying a whole literal.
	f, c := &st.front, &st.call
	f.w, f.req = w, req
	c.r, c.rt, c.route, c.ctx, c.st = r, rt, f, req.Context(), st
	c.canonical = unsafeString(st.key)
	c.skey = r.storageKeyIn(st, c.canonical)
	c.names, c.vals = st.names, st.vals
	c.fills, c.abandonAfter = req.Method != http.MethodHead, r.cfg.FillTimeout
	return c
}

// bypassKey runs next uncached for a request whose key or counter names
// could not be built (a template naming a missing route parameter).
func (rt *Route) bypassKey(st *reqState, w http.ResponseWriter, req *http.Request, next nextFunc) error {
	putState(st)
	rt.r.recordBypassIn(req.Context(), BypassKey, false)
	setBypass(w, BypassKey)
	return next(w, req)
}

// serveKeyed is serve on the memory store or a near cache for a route
// whose counter names are a function of its key (namesFromKey: the
// default key), without Compress (whose replay may turn a hit into a
// miss). Past the bypasses, and without an Observer (the general read is
// timed and traced: serveGeneral), the key is built on the stack, and a
// fresh hit (keyedHit) is answered from it alone: no request state, no
// counter names, no call. Anything else takes a pooled state, builds the
// names and goes the general way; so does an early refresh, after the
// hit, with the values of the counters the hit read.
func (rt *Route) serveKeyed(w http.ResponseWriter, req *http.Request, p params, cp *ctxParams, pattern string, next nextFunc) error {
	if reason := rt.bypassReason(req); reason != "" {
		return rt.serveBypass(w, req, reason, next)
	}
	r := rt.r
	if r.c.obs.p.Load() != nil {
		return rt.serveGeneral(w, req, p, cp, pattern, next)
	}
	var buf [stackKeyBytes]byte
	key, onStack := rt.appendStackKey(buf[:0], req, pattern)
	var e *backend.Entry
	var now int64
	absent := false
	if onStack {
		if e, now, absent = rt.keyedHit(unsafeString(key)); e != nil {
			// routeFront.replay of a hit, without Observer and Compress.
			r.stats.n[cHits].Add(1)
			r.replayAs(w, req, e, now, false, nil)
			if r.cfg.EarlyRefresh == 0 || req.Method == http.MethodHead || !xfetch(e, now, r.cfg.EarlyRefresh) {
				return nil
			}
		}
	}
	st := rt.getState(cp, &p)
	if onStack {
		st.key = append(st.key, key...)
	} else {
		rt.buildKey(st, req, pattern)
	}
	if !rt.buildNames(st, req, p, canonicalPath(req.URL)) {
		if e != nil {
			putState(st) // answered: no refresh
			return nil
		}
		return rt.bypassKey(st, w, req, next)
	}
	c := rt.call(st, w, req)
	if e != nil {
		// An early refresh after the hit: the values read are the entry's,
		// which keyedHit found current.
		for i := range c.vals {
			c.vals[i] = e.Counters[i].Value
		}
		r.record(evEarlyRefresh)
		c.refresh(next)
		putState(st)
		return nil
	}
	var err error
	if absent {
		err = c.serveAbsent(next)
	} else {
		err = c.serve(next)
	}
	putState(st)
	return err
}

// serveAbsent is serve for a call whose entry the memory store was just
// found not to hold (keyedHit): the counters are read as the lookup
// would have read them, and the call misses, without a second read of
// the entry (the leader of the fill re-checks the store: claim).
func (c *call) serveAbsent(next nextFunc) error {
	_ = c.r.mem.Counters(c.ctx, c.names, c.vals) // never fails
	if !c.fills {
		// A HEAD response has no body to store for GET; run it uncached.
		c.recordBypass(BypassHead)
		return c.bypass(BypassHead, next)
	}
	return c.miss(next)
}

// keyedHit returns the entry a fresh hit on the memory store or a near
// cache answers with for key, and the time it is judged at, or nil
// (absent: the memory store holds no entry under key). The entry is read
// first: stored by this route under this very key (namesFromKey), it
// depends on the counters the request would name, in the same order,
// then its runtime tags'; their names are the entry's own. On the memory
// store each is read after the entry and compared with its snapshot
// (memory.Backend.HeldUnchanged), as valid compares the values a lookup
// read. A near cache returns the entry only when the values of all of
// them, as its local counters hold them now, equal its snapshot
// (near.Cache.Fresh): what its Load would read and valid conclude. A
// counter bumped before the request began is seen; an entry stored after
// the bump holds the bumped value. Anything but a fresh, valid entry
// (none, another route's, expired, stale, a pending invalidation, a
// changed counter, counters a near cache would read remotely) is left to
// the general lookup.
func (rt *Route) keyedHit(key string) (_ *backend.Entry, now int64, absent bool) {
	r := rt.r
	var e *backend.Entry
	var h *memory.Held
	ownKey := true // e was found under key and its Key is key, compared once already
	if m := r.mem; m != nil {
		if h = m.Held(key); h == nil {
			return nil, 0, true
		}
		e, ownKey = h.Entry(), h.OwnKey()
		if e.Producer != rt {
			return nil, 0, false
		}
	} else if e = r.near.Fresh(key, rt); e == nil { // rt's, or vouched for (call.vouch); its own key
		return nil, 0, false
	}
	if len(e.Counters) < 2+len(rt.tags) || !ownKey && e.Key != key || r.invalidationPending() {
		return nil, 0, false
	}
	now = nowNano()
	if e.FreshUntil-now < int64(clockGuard) {
		// Near or past expiry: decide on the real clock, not the coarse one.
		now = time.Now().UnixNano()
	}
	if now >= e.FreshUntil || h != nil && !r.mem.HeldUnchanged(h) {
		return nil, 0, false
	}
	r.brk.succeeded() // as a successful read (call.read)
	return e, now, false
}

// serve looks the key up and answers: a fresh entry is replayed (and
// maybe refreshed early), a stale one replayed and refreshed, and anything
// else is a miss.
func (c *call) serve(next nextFunc) error {
	r := c.r
	e, err := c.lookup()
	if err != nil {
		c.recordBypass(BypassBackend)
		return c.bypass(BypassBackend, next)
	}
	now := nowNano()
	if e != nil && e.FreshUntil-now < int64(clockGuard) {
		// Near or past expiry: decide on the real clock, not the coarse one.
		now = time.Now().UnixNano()
	}
	switch c.classify(e, now) {
	case fresh:
		if r.near != nil && e.Producer == nil {
			c.vouch(e)
		}
		if c.replay(e, now, evHit) {
			if r.cfg.EarlyRefresh > 0 && c.fills && xfetch(e, now, r.cfg.EarlyRefresh) {
				r.record(evEarlyRefresh)
				c.refresh(next)
			}
			return nil
		}
	case staleOK:
		// Stale-while-revalidate: answer now, then refresh once.
		if c.replay(e, now, evStale) {
			if c.fills {
				c.refresh(next)
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
		c.recordBypass(BypassHead)
		return c.bypass(BypassHead, next)
	}
	return c.miss(next)
}

// vouch tells the near cache that c's route may answer from e by its key
// alone (keyedHit), as if it had stored e: e, which another instance
// stored, was found fresh under c's key, and its first counters are the
// ones c's route names, which are a function of route and key
// (namesFromKey), in order. Its further counters (runtime tags) are
// checked on every hit, as for the route's own entries.
func (c *call) vouch(e *backend.Entry) {
	rt := c.rt
	if rt == nil || !rt.keyedHits || e.Key != c.canonical || len(e.Counters) < len(c.names) {
		return
	}
	for i, n := range c.names {
		if e.Counters[i].Name != n {
			return
		}
	}
	c.r.near.Vouch(c.skey, e, rt)
}

// miss joins the key's flight: its leader fills (on this goroutine, or in
// the background for a detached front), and every caller answers from
// the flight once it lands.
func (c *call) miss(next nextFunc) error {
	f, leader := c.r.flights.joinWith(c.skey, c.abandonAfter, c.ownTail())
	if leader {
		if !c.detached() {
			c.fill(f, next)
			return c.answer(f, true, false, next) // landed by fill: no wait
		} else if d := c.detach(); !c.r.c.bg.run(func() { d.fill(f, nil) }) {
			// The Cache is closing: no new background work; the caller
			// runs its producer uncached.
			f.bypassed = true
			c.r.flights.land(c.skey, f)
		}
	}
	return c.await(f, leader, next)
}

// detach copies c for a fill or refresh in the background: its own
// counter values, and the caller's context without its cancellation.
func (c *call) detach() *call {
	d := *c
	d.vals = append([]uint64(nil), c.vals...)
	d.xnames, d.xvals = nil, nil // scratch: not shared with c
	d.ctx = context.WithoutCancel(c.ctx)
	return &d
}

// staleIfError answers with the call's stale-if-error entry, if it has
// one that can answer.
func (c *call) staleIfError() bool {
	return c.fallback != nil && c.replay(c.fallback, time.Now().UnixNano(), evStaleIfError)
}

// replay answers the caller from e, counting ev; see front.replay.
func (c *call) replay(e *backend.Entry, now int64, ev event) bool {
	if c.route != nil {
		return c.route.replay(c, e, now, ev)
	}
	return c.fr.replay(c, e, now, ev)
}

// accepts reports whether a stored entry may end a fill; see front.accepts.
func (c *call) accepts(e *backend.Entry) bool { return c.route != nil || c.fr.accepts(e) }

// detached reports whether fills run in the background; see front.detached.
func (c *call) detached() bool { return c.route == nil && c.fr.detached() }

// bypass runs the producer uncached; see front.bypass.
func (c *call) bypass(reason BypassReason, next nextFunc) error {
	if c.route != nil {
		return c.route.bypass(reason, next)
	}
	return c.fr.bypass(c, reason)
}

// runProducer runs the producer once; see front.produce.
func (c *call) runProducer(ctx context.Context, refresh bool, next nextFunc) produced {
	if c.route != nil {
		return c.route.produce(c, ctx, refresh, next)
	}
	return c.fr.produce(c, ctx, refresh)
}

// settle answers from a landed flight; see front.settle.
func (c *call) settle(f *flight, o outcome, next nextFunc) error {
	c.traceSettle(o)
	if c.route != nil {
		return c.route.settle(c, f, o, next)
	}
	return c.fr.settle(c, f, o)
}
