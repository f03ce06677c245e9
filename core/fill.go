package core

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// fill leads a key's flight: it takes the entry another fill (here or on
// another instance) stored meanwhile, or runs the producer and stores its
// result, leaving the outcome in f for every caller (the leader answers
// from it too, in await).
func (c *call) fill(f *flight, next nextFunc) {
	r := c.r
	// The flight and the entry outlive the request's pooled state.
	c.skey, c.canonical = strings.Clone(c.skey), strings.Clone(c.canonical)
	defer r.flights.land(c.skey, f)
	e, release := c.claim()
	if release != nil {
		defer release()
	}
	if e != nil {
		f.e, f.snap = e, e.Counters
		return
	}
	// The counters this entry will carry are the ones read before the
	// producer runs: an invalidation while it runs makes it unusable.
	ectx, sp := r.startOp(c.ctx, OpEnsureCounters)
	err := r.be.Ensure(ectx, c.names, c.vals)
	endOp(sp, err)
	if err != nil {
		r.opDone(c.ctx, "ensure-counters", err)
		c.recordBypass(BypassBackend)
		f.bypassed = true
		return
	}
	r.record(evMiss)
	c.produce(f, false, next)
}

// claim looks for an entry stored since the call's lookup: across
// instances through the key's lease (taking it, or waiting for the
// instance holding it: release is then non-nil, to call once the fill is
// stored), else by reading the key again inside the flight (a fill that
// just landed may have stored it).
func (c *call) claim() (e *backend.Entry, release func()) {
	r := c.r
	if c.leasing() {
		e, release, out := c.lease()
		switch out {
		case leaseAwaited:
			r.record(evCoalesced) // filled by another instance
		case leaseTimeout:
			r.record(evLeaseTimeout)
		}
		return e, release
	}
	if e, err := c.recheck(); err == nil && c.classify(e, time.Now().UnixNano()) == fresh && c.accepts(e) {
		return e, nil
	}
	return nil, nil
}

// leasing reports whether fills of c's region are coordinated across
// instances by a lease.
func (c *call) leasing() bool {
	_, ok := c.r.be.(backend.Leaser)
	return ok && c.r.cfg.LeaseTTL > 0
}

// produce runs the producer on a context detached from the caller's
// (bounded by FillTimeout), stores what it produced, and leaves the
// outcome in f.
func (c *call) produce(f *flight, refresh bool, next nextFunc) {
	r := c.r
	fctx, sp := c.startFill(refresh)
	var p produced
	defer c.endFill(sp, refresh, &p)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(fctx), r.cfg.FillTimeout)
	defer cancel()
	p = c.runProducer(ctx, refresh, next)
	f.ran, f.val, f.err, f.panicked, f.failed, f.fail, f.snap = true, p.val, p.err, p.panicked, p.failed, p.fail, p.snap
	if p.store == nil && p.share == nil {
		return
	}
	storeCtx, cancelStore := context.WithTimeout(context.WithoutCancel(fctx), r.cfg.FillTimeout)
	defer cancelStore()
	if p.store != nil {
		p.reason = r.storeEntry(storeCtx, c.skey, p.store)
	}
	if p.store != nil && p.reason == "" && p.share == nil && c.unchanged(storeCtx) {
		// Hand the entry to waiters only if no invalidation landed meanwhile.
		f.e = p.store
	}
	if p.share != nil {
		f.e = p.share
	}
}

// unchanged reports whether the call's counters still hold the values it
// read before its producer ran.
func (c *call) unchanged(ctx context.Context) bool {
	now := make([]uint64, len(c.names))
	ctx, sp := c.r.startOp(ctx, OpGetCounters)
	err := c.r.be.Counters(ctx, c.names, now)
	endOp(sp, err)
	if err != nil {
		return false
	}
	for i := range now {
		if now[i] != c.vals[i] {
			return false
		}
	}
	return true
}

// snapshot is the counter snapshot an entry produced now will carry.
func (c *call) snapshot() []backend.CounterSnap {
	snap := make([]backend.CounterSnap, len(c.names))
	for i, n := range c.names {
		snap[i] = backend.CounterSnap{Name: strings.Clone(n), Value: c.vals[i]}
	}
	return snap
}

// refresh recomputes an entry after its (stale or early-expiring) copy
// was served: at most one refresh (or fill) per key runs in this process,
// and at most MaxRefreshes per region; one across instances, whoever holds
// the key's lease. A refresh that cannot start is skipped. A route
// refreshes on the request's goroutine (Gin and Echo recycle their
// contexts once a request returns, so it cannot move to another), after
// its response was flushed; a memoized value in the background.
func (c *call) refresh(next nextFunc) {
	r := c.r
	// Join first: a call finding the key already being filled or
	// refreshed has nothing to do, and must not count as skipped for
	// MaxRefreshes, which bounds refreshes of distinct keys.
	f, leader := r.flights.join(c.skey, c.abandonAfter)
	if !leader {
		return
	}
	select {
	case r.refreshSem <- struct{}{}:
	default:
		r.record(evRefreshSkipped)
		r.flights.land(c.skey, f)
		return
	}
	if !c.detached() {
		c.refill(f, next)
		return
	}
	if d := c.detach(); !r.c.bg.run(func() { d.refill(f, nil) }) {
		<-r.refreshSem // the Cache is closing
		r.flights.land(c.skey, f)
	}
}

// refill is the body of a refresh holding a refreshSem slot.
func (c *call) refill(f *flight, next nextFunc) {
	r := c.r
	defer func() { <-r.refreshSem }()
	c.skey, c.canonical = strings.Clone(c.skey), strings.Clone(c.canonical)
	defer r.flights.land(c.skey, f)
	if c.leasing() {
		release, got := c.acquireLease()
		if !got {
			return // another instance refreshes it (or the store failed)
		}
		defer release()
	}
	r.record(evRefresh)
	c.produce(f, true, next)
	if f.err != nil {
		r.c.log.Warn("routecache: background refresh failed", "region", r.name, "key", c.canonical, "err", f.err)
	}
}

// newEntry builds the entry of a response (or memoized value) whose
// producer started at start, with the counter snapshot read before it ran
// and the region's lifetimes.
func (r *Region) newEntry(status int, header http.Header, body []byte, canonical string, snap []backend.CounterSnap, start time.Time) *backend.Entry {
	e := &backend.Entry{
		Status:    status,
		Header:    header,
		Body:      body,
		Created:   start.UnixNano(),
		FillNanos: int64(time.Since(start)),
		Key:       canonical,
		Counters:  snap,
	}
	e.FreshUntil = e.Created + int64(r.cfg.TTL)
	e.StaleUntil = e.FreshUntil + int64(max(r.cfg.Stale, r.cfg.StaleIfError))
	return e
}

// storeEntry writes e for its kept lifetime and accounts for the outcome:
// a refusal is counted as a not-stored reason, a failure also as a backend
// error. It returns why the entry was not stored, "" once stored.
func (r *Region) storeEntry(ctx context.Context, skey string, e *backend.Entry) NotStoredReason {
	o, t0 := r.obsStart()
	sctx, sp := r.startOp(ctx, OpSet)
	err := r.be.Store(sctx, skey, e, r.cfg.TTL+max(r.cfg.Stale, r.cfg.StaleIfError))
	endOp(sp, err)
	r.obsLatency(o, "set", t0)
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrTooLarge):
		r.recordNotStored(NotStoredTooLarge)
		return NotStoredTooLarge
	case errors.Is(err, backend.ErrDropped):
		r.recordNotStored(NotStoredDropped)
		return NotStoredDropped
	default:
		r.opDone(ctx, "set", err)
		r.recordNotStored(NotStoredBackend)
		return NotStoredBackend
	}
	r.recordStore(len(e.Body))
	return ""
}

// produced is the outcome of one run of a producer.
type produced struct {
	// store is the entry to store (nil: not storable; the reason is
	// counted). share, if set, is handed to the flight's callers whether
	// or not it was stored (a memoized value: they check its snapshot).
	store, share *backend.Entry
	snap         []backend.CounterSnap // the snapshot it was computed under
	val          any                   // the memoized function's value
	failed       bool                  // 5xx, error, panic or timeout
	err          error                 // the producer's error
	panicked     any                   // a recovered panic value, to re-raise
	fail         *failure              // what a route's waiters answer for a failure
	reason       NotStoredReason       // why it was not stored (counted), for the Tracers
}

// panicFailure is what the waiters of a fill whose handler panicked
// answer: the panic itself goes on to the leader's framework.
var panicFailure = plainFailure(http.StatusInternalServerError, detailSharedFailure)

// produce runs the route's handler into a recorder, on ctx. A leader's
// response streams to the client as it is recorded, unless it holds a
// stale-if-error fallback: then it is held back, so that a failure (5xx,
// error, panic) can be replaced by the stale entry (a response too large
// to hold starts streaming and loses that protection). A refresh's
// response goes nowhere, after the client's was flushed. A panic is
// recovered and re-raised by settle (outOwn), after the waiters were
// released.
func (rf *routeFront) produce(c *call, ctx context.Context, refresh bool, next nextFunc) (p produced) {
	r := c.r
	var rw *recorder
	if refresh {
		_ = http.NewResponseController(rf.w).Flush()
		rw = &recorder{w: &sinkWriter{h: http.Header{}}, before: http.Header{}, record: true, max: r.cfg.MaxEntryBytes, hold: true, hdr: http.Header{}}
	} else {
		rw = &recorder{w: rf.w, before: rf.w.Header().Clone(), record: true, max: r.cfg.MaxEntryBytes, onCommit: setMiss}
		if c.fallback != nil {
			rw.hold, rw.hdr = true, rf.w.Header().Clone()
		}
		rf.rw = rw
	}
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != nil {
				p.notStored(r, NotStoredPanic)
				p.failed, p.panicked, p.fail = true, v, panicFailure
				if refresh || rw.hold {
					r.c.log.Error("routecache: handler panicked (stale entry served, or refresh dropped)", "region", r.name, "panic", v)
				}
			}
		}()
		p.err = next(rw, rf.req.WithContext(ctx))
	}()
	if p.panicked != nil {
		// A fill whose response already started streaming (too large to
		// hold back) re-raises it, or the client would take a truncated
		// body for a complete one.
		return p
	}
	skip := errors.Is(p.err, errSkipStore)
	if skip {
		p.err = nil
	}
	if p.err == nil && !skip {
		// A skipped response left uncommitted is the framework's to finish
		// (Gin renders c.Errors in an outer middleware): committing a 200
		// here would preempt it.
		rw.finish()
	}
	p.failed = p.err != nil || rw.status >= 500 || ctx.Err() != nil
	if rw.hold && rw.commit {
		// A held response goes out when released, with every header set
		// until then, not just those present at its first write.
		rw.snapshot = rw.hdr.Clone()
	}
	if p.failed {
		p.fail = sharedFailure(rw, ctx.Err() != nil)
	}
	sent := canonicalHeader(rw.snapshot)
	var reason NotStoredReason
	switch {
	case p.err != nil, skip:
		reason = NotStoredError
	case rw.hijacked:
		reason = NotStoredHijacked
	case rw.flushed:
		reason = NotStoredFlushed
	case rw.over:
		reason = NotStoredTooLarge
	case ctx.Err() != nil:
		reason = NotStoredError
	case hasTrailers(rw.Header()): // the live map: trailers come after the body
		reason = NotStoredTrailer
	default:
		reason = r.responseReason(rw.status, sent)
	}
	if reason != "" {
		p.notStored(r, reason)
		return p
	}
	p.snap = c.snapshot()
	e := r.newEntry(rw.status, storedHeader(canonicalHeader(rw.before), sent), rw.body, c.canonical, p.snap, start)
	e.Producer = c.rt
	if e.ETag = e.Header.Get("Etag"); e.ETag == "" {
		e.ETag = strongETag(e.Body)
		e.Header["Etag"] = []string{e.ETag}
	}
	if e.Header.Get("Last-Modified") == "" {
		e.Header["Last-Modified"] = []string{start.UTC().Format(http.TimeFormat)}
	}
	e.Prepare()
	p.store = e
	return p
}

// sharedFailure is the failure a failed fill's waiters may answer: the
// origin's own 5xx as it was sent (replayable headers, so never
// Set-Cookie; the recorded body), a plain response with its status when it
// could not be kept whole, a 504 for a fill past FillTimeout that sent no
// 5xx, and nil for a failure only the framework renders (an error with no
// 5xx committed): a status below 500 is never shared, since a response
// that was not storable may be personal.
func sharedFailure(rw *recorder, timedOut bool) *failure {
	switch {
	case rw.commit && rw.status >= 500:
		if rw.over || rw.flushed || rw.hijacked {
			return plainFailure(rw.status, detailSharedFailure)
		}
		sent := canonicalHeader(rw.snapshot)
		return &failure{status: rw.status, header: storedHeader(canonicalHeader(rw.before), sent), body: rw.body, detail: detailSharedFailure}
	case timedOut:
		return plainFailure(http.StatusGatewayTimeout, detailFillTimeout)
	}
	return nil
}

// sinkWriter absorbs a background refresh's response.
type sinkWriter struct{ h http.Header }

func (s *sinkWriter) Header() http.Header { return s.h }

func (s *sinkWriter) WriteHeader(int) {}

func (s *sinkWriter) Write(b []byte) (int, error) { return len(b), nil }
