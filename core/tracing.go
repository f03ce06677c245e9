package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Tracer is an optional interface an Observer may also implement to follow
// the cache with each request's context: what the request came to, and
// spans around the remote backend operations and the fills it ran.
// Package otelcache implements it for OpenTelemetry.
//
// The Cache discovers it once, when the observer is registered
// (Config.Observer or Cache.AddObserver); without a Tracer the engine pays
// a nil check per hook. Methods are called synchronously on the request's
// goroutine (or a background fill's), as the Observer's are: they must be
// fast, must not block and must be safe for concurrent use.
type Tracer interface {
	// Outcome reports what a request (or Load call) came to, with the
	// request's context (a memoized value's: the caller's). It is called
	// once per request, and again when the outcome changes: a failed fill
	// answered with a stale-if-error entry is a miss, then stale.
	Outcome(ctx context.Context, o Outcome)
	// StartOp begins an operation on a remote backend (Redis, Memcached,
	// a gocache store; never the embedded memory store) for ctx's request.
	// It returns the context the operation runs with and the Span to end
	// when it is done, or a nil Span to hear no more of it.
	StartOp(ctx context.Context, region string, op BackendOp) (context.Context, Span)
	// StartFill begins a fill: the route's handler (or memoized function)
	// runs with the returned context, then its result is stored. The
	// returned Span (if not nil) is ended with what the fill came to.
	StartFill(ctx context.Context, f Fill) (context.Context, Span)
}

// Span is a piece of work a Tracer started; End is called once, when it
// is done.
type Span interface {
	// End ends the work.
	End(e SpanEnd)
}

// SpanEnd is how a Span's work ended.
type SpanEnd struct {
	// Err is the work's failure, nil if none: the backend's error, or for
	// a fill the producer's (its error, a panic, a 5xx response or
	// FillTimeout).
	Err error
	// Stored reports whether a fill's result was stored; NotStored says
	// why not ("" when stored, and for backend operations).
	Stored    bool
	NotStored NotStoredReason
}

// Fill describes a fill a Tracer is told of.
type Fill struct {
	Region string
	// Refresh is set for a refresh (stale-while-revalidate, early
	// refresh) after the request was answered, rather than a miss.
	Refresh bool
	// Memoized is set for a memoized function (Load, Memoize) rather than
	// a route's handler.
	Memoized bool
}

// Result is what a request came to: ResultHit, ResultStale, ResultMiss or
// ResultBypass.
type Result string

// The results of an Outcome.
const (
	ResultHit    Result = "hit"    // answered fresh from the cache
	ResultStale  Result = "stale"  // answered with a stale entry (either kind)
	ResultMiss   Result = "miss"   // the handler (or function) ran to fill, or the caller waited for another's fill it could not take
	ResultBypass Result = "bypass" // the request skipped the cache
)

// Outcome is what one request (or Load call) came to, as a Tracer hears
// it.
type Outcome struct {
	Region string
	Result Result
	// Bypass is why a ResultBypass request skipped the cache.
	Bypass BypassReason
	// Stored reports whether a ResultMiss request's own fill stored its
	// result; NotStored says why not (empty when another caller filled).
	Stored    bool
	NotStored NotStoredReason
	// Age is the age of the entry a ResultHit or ResultStale request was
	// answered with.
	Age time.Duration
	// Coalesced is set when the request was answered from, or waited
	// for, another caller's fill.
	Coalesced bool
	// Memoized is set for a Load call rather than a route.
	Memoized bool
}

// Backend operations named in a Tracer's spans only (Observer events
// report a poll as OpGet, and tag invalidations not at all).
const (
	OpLeasePoll     BackendOp = "lease-poll"     // a poll for another instance's fill: entry, counters and lease in one round trip
	OpInvalidateTag BackendOp = "invalidate-tag" // a tag counter bumped
)

// tracersOf returns the Tracers among obs (nil if none, the Tracer itself
// if one).
func tracersOf(obs []Observer) Tracer {
	var l tracerList
	for _, o := range obs {
		if t, ok := o.(Tracer); ok {
			l = append(l, t)
		}
	}
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	return l
}

// tracer returns the Cache's Tracers, or nil when none is registered.
func (s *observerSlot) tracer() Tracer {
	if set := s.p.Load(); set != nil {
		return set.tracer
	}
	return nil
}

// tracerList fans the hooks out to several Tracers, in order; each
// starts its span in the context the previous one returned.
type tracerList []Tracer

func (l tracerList) Outcome(ctx context.Context, o Outcome) {
	for _, t := range l {
		t.Outcome(ctx, o)
	}
}

func (l tracerList) StartOp(ctx context.Context, region string, op BackendOp) (context.Context, Span) {
	var spans spanList
	for _, t := range l {
		var s Span
		if ctx, s = t.StartOp(ctx, region, op); s != nil {
			spans = append(spans, s)
		}
	}
	return ctx, spans.span()
}

func (l tracerList) StartFill(ctx context.Context, f Fill) (context.Context, Span) {
	var spans spanList
	for _, t := range l {
		var s Span
		if ctx, s = t.StartFill(ctx, f); s != nil {
			spans = append(spans, s)
		}
	}
	return ctx, spans.span()
}

// spanList ends several Tracers' spans, the last started first.
type spanList []Span

func (l spanList) span() Span {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	return l
}

func (l spanList) End(e SpanEnd) {
	for i := len(l) - 1; i >= 0; i-- {
		l[i].End(e)
	}
}

// startOp starts a Tracer's span for an operation on the region's
// backend, if one is registered and the backend is remote; the
// operation runs with the returned context. End it with endOp.
func (r *Region) startOp(ctx context.Context, op BackendOp) (context.Context, Span) {
	if t := r.c.obs.tracer(); t != nil && r.be.Remote() {
		return t.StartOp(ctx, r.name, op)
	}
	return ctx, nil
}

// endOp ends a span startOp returned (nil: none).
func endOp(s Span, err error) {
	if s != nil {
		s.End(SpanEnd{Err: err})
	}
}

// startBump starts a Tracer's span for a counter bump of an invalidation
// (a tag's bears no region).
func (q *bumpQueue) startBump(ctx context.Context, ev backend.Event) (context.Context, Span) {
	t := q.c.obs.tracer()
	if t == nil || !q.be.Remote() {
		return ctx, nil
	}
	op := OpInvalidateTag
	switch ev.Kind {
	case backend.EventRegion:
		op = OpInvalidateRegion
	case backend.EventKey:
		op = OpInvalidateKey
	}
	return t.StartOp(ctx, ev.Region, op)
}

// recordBypass counts the call's bypass (Region.recordBypass) and reports
// it to the Tracers.
func (c *call) recordBypass(reason BypassReason) {
	c.r.recordBypassIn(c.ctx, reason, c.route == nil)
}

// recordBypassIn counts a bypass and reports it to the Tracers, with the
// request's context; memo is set for a Load call.
func (r *Region) recordBypassIn(ctx context.Context, reason BypassReason, memo bool) {
	r.recordBypass(reason)
	if t := r.c.obs.tracer(); t != nil {
		t.Outcome(ctx, Outcome{Region: r.name, Result: ResultBypass, Bypass: reason, Memoized: memo})
	}
}

// traceReplay reports an answer from the cache (ev: evHit, evCoalescedHit,
// evStale or evStaleIfError) to the Tracers: a nil check without them.
func (c *call) traceReplay(e *backend.Entry, now int64, ev event) {
	if t := c.r.c.obs.tracer(); t != nil {
		c.reportReplay(t, e, now, ev)
	}
}

func (c *call) reportReplay(t Tracer, e *backend.Entry, now int64, ev event) {
	o := Outcome{Region: c.r.name, Result: ResultHit, Age: max(time.Duration(now-e.Created), 0),
		Coalesced: ev == evCoalescedHit, Memoized: c.route == nil}
	if ev == evStale || ev == evStaleIfError {
		o.Result = ResultStale
	}
	t.Outcome(c.ctx, o)
}

// traceSettle reports a call that waited for another caller's fill and
// could not answer with its entry (a failure, a timeout, an entry it may
// not take) as a coalesced miss.
func (c *call) traceSettle(o outcome) {
	if o == outOwn {
		return // the leader's fill reported it (endFill)
	}
	if t := c.r.c.obs.tracer(); t != nil {
		t.Outcome(c.ctx, Outcome{Region: c.r.name, Result: ResultMiss, Coalesced: true, Memoized: c.route == nil})
	}
}

// startFill starts a Tracer's span for a fill (or refresh) of the call:
// the producer and the store run with the returned context.
func (c *call) startFill(refresh bool) (context.Context, Span) {
	if t := c.r.c.obs.tracer(); t != nil {
		return t.StartFill(c.ctx, Fill{Region: c.r.name, Refresh: refresh, Memoized: c.route == nil})
	}
	return c.ctx, nil
}

// endFill ends a fill's span with what p came to and, for a miss (not a
// refresh), reports the request's outcome.
func (c *call) endFill(s Span, refresh bool, p *produced) {
	t := c.r.c.obs.tracer()
	if t == nil {
		return
	}
	stored := p.store != nil && p.reason == ""
	if s != nil {
		s.End(SpanEnd{Err: p.failure(), Stored: stored, NotStored: p.reason})
	}
	if !refresh {
		t.Outcome(c.ctx, Outcome{Region: c.r.name, Result: ResultMiss, Stored: stored, NotStored: p.reason, Memoized: c.route == nil})
	}
}

// notStored counts a result that is not stored and keeps the reason for
// the Tracers.
func (p *produced) notStored(r *Region, reason NotStoredReason) {
	r.recordNotStored(reason)
	p.reason = reason
}

// errFillFailed is a fill's failure with nothing more to say.
var errFillFailed = errors.New("routecache: fill failed")

// failure is the producer's failure as an error, nil if it did not fail.
func (p *produced) failure() error {
	switch {
	case p.err != nil:
		return p.err
	case p.panicked != nil:
		return fmt.Errorf("routecache: producer panicked: %v", p.panicked)
	case p.fail != nil:
		return fmt.Errorf("routecache: fill failed with status %d (%s)", p.fail.status, p.fail.detail)
	case p.failed:
		return errFillFailed
	}
	return nil
}
