package core

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// fill runs the handler for a key this request leads, streaming to the
// client while recording, and stores the response when it is storable.
// With a stale-if-error fallback the response is held back instead of
// streamed, so that a failure (5xx, error, panic) can be replaced by the
// stale entry; a response too large to hold starts streaming and loses
// that protection.
func (rt *Route) fill(w http.ResponseWriter, req *http.Request, f *flight, skey, canonical string, names []string, vals []uint64, fallback *backend.Entry, next nextFunc) (err error) {
	r := rt.r
	var stored *backend.Entry
	var fail *failure
	failed := true
	defer func() { r.flights.landResult(skey, f, stored, failed, fail) }()

	if _, ok := r.be.(backend.Leaser); ok && r.cfg.LeaseTTL > 0 {
		// Across instances: one fills, the others wait for its entry. The
		// entry is read again once the lease is taken (another instance may
		// have stored it and released the lease since this request looked),
		// which also covers a fill of this process that just landed.
		e, release, out := r.lease(req.Context(), rt, skey, canonical, names, vals, nil)
		if release != nil {
			defer release()
		}
		switch out {
		case leaseFound, leaseAwaited:
			failed, stored = false, e
			if out == leaseAwaited {
				r.stats.coalesced.Add(1)
			}
			r.stats.hits.Add(1)
			r.replay(w, req, e, time.Now().UnixNano(), "HIT")
			return nil
		case leaseTimeout:
			r.stats.leaseTimeouts.Add(1)
		}
	} else if e, lerr := r.recheck(req.Context(), skey, names, vals); lerr == nil {
		// Re-check inside the flight: a fill that just landed may have stored it.
		now := time.Now().UnixNano()
		if r.classify(req.Context(), rt, e, canonical, names, vals, now) == fresh {
			failed = false
			stored = e
			r.stats.hits.Add(1)
			r.replay(w, req, e, now, "HIT")
			return nil
		}
	}
	// The counters this entry will carry are the ones read before the
	// handler runs: an invalidation during the handler makes it unusable.
	if err := r.be.Ensure(req.Context(), names, vals); err != nil {
		r.opDone(req.Context(), "ensure-counters", err)
		failed = false
		r.stats.addBypass(BypassBackend)
		setBypass(w, BypassBackend)
		return next(w, req)
	}
	r.stats.misses.Add(1)
	if o := r.observer(); o != nil {
		o.Miss(r.name)
	}
	rw := &recorder{w: w, before: w.Header().Clone(), record: true, max: r.cfg.MaxEntryBytes, onCommit: setMiss}
	if fallback != nil {
		rw.hold, rw.hdr = true, w.Header().Clone()
	}
	fail = panicFailure // if produce re-raises a panic
	res := rt.produce(rw, req, skey, canonical, names, vals, next, fallback != nil)
	stored, failed, fail = res.handed, res.failed, res.fail
	if fallback != nil && rw.hold {
		if res.failed {
			r.stats.stale.Add(1)
			r.stats.staleIfError.Add(1)
			r.replay(w, req, fallback, time.Now().UnixNano(), "STALE")
			return nil
		}
		rw.release()
	}
	if res.panicked != nil {
		panic(res.panicked)
	}
	return res.err
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
// error. It reports whether the entry was stored.
func (r *Region) storeEntry(ctx context.Context, skey string, e *backend.Entry) bool {
	o, t0 := r.obsStart()
	err := r.be.Store(ctx, skey, e, r.cfg.TTL+max(r.cfg.Stale, r.cfg.StaleIfError))
	r.obsLatency(o, "set", t0)
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrTooLarge):
		r.stats.addNotStored(NotStoredTooLarge)
		return false
	case errors.Is(err, backend.ErrDropped):
		r.stats.addNotStored(NotStoredDropped)
		return false
	default:
		r.opDone(ctx, "set", err)
		r.stats.addNotStored(NotStoredBackend)
		return false
	}
	r.stats.stores.Add(1)
	if o != nil {
		o.Store(r.name, len(e.Body))
	}
	return true
}

// produced is the outcome of one handler run.
type produced struct {
	handed   *backend.Entry // stored and safe to hand to waiters
	failed   bool           // 5xx, error, panic or timeout
	err      error          // the handler's error, for the framework
	panicked any            // a recovered panic value, to re-raise
	fail     *failure
}

// panicFailure is what the waiters of a fill whose handler panicked
// answer: the panic itself goes on to the leader's framework.
var panicFailure = plainFailure(http.StatusInternalServerError, detailSharedFailure)

// produce runs next into rw on a context detached from the request's
// (with the region's FillTimeout), then stores the response if storable.
// A panic is recovered and returned when recoverPanic is set (a stale
// entry or a background refresh absorbs it), and re-raised otherwise.
func (rt *Route) produce(rw *recorder, req *http.Request, skey, canonical string, names []string, vals []uint64, next nextFunc, recoverPanic bool) (res produced) {
	r := rt.r
	fillCtx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), r.cfg.FillTimeout)
	defer cancel()
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != nil {
				r.stats.addNotStored(NotStoredPanic)
				res.failed, res.panicked, res.fail = true, v, panicFailure
				if !recoverPanic {
					panic(v)
				}
				r.c.log.Error("routecache: handler panicked (stale entry served, or refresh dropped)", "region", r.name, "panic", v)
			}
		}()
		res.err = next(rw, req.WithContext(fillCtx))
	}()
	if res.panicked != nil {
		// Kept even when recovered: a fill whose response already started
		// streaming (too large to hold back) must re-raise it, or the
		// client would take a truncated body for a complete one.
		return res
	}
	skip := errors.Is(res.err, errSkipStore)
	if skip {
		res.err = nil
	}
	if res.err == nil && !skip {
		// A skipped response left uncommitted is the framework's to finish
		// (Gin renders c.Errors in an outer middleware): committing a 200
		// here would preempt it.
		rw.finish()
	}
	res.failed = res.err != nil || rw.status >= 500 || fillCtx.Err() != nil
	if rw.hold && rw.commit {
		// A held response goes out when released, with every header set
		// until then, not just those present at its first write.
		rw.snapshot = rw.hdr.Clone()
	}
	if res.failed {
		res.fail = sharedFailure(rw, fillCtx.Err() != nil)
	}
	sent := canonicalHeader(rw.snapshot)
	var reason NotStoredReason
	switch {
	case res.err != nil, skip:
		reason = NotStoredError
	case rw.hijacked:
		reason = NotStoredHijacked
	case rw.flushed:
		reason = NotStoredFlushed
	case rw.over:
		reason = NotStoredTooLarge
	case fillCtx.Err() != nil:
		reason = NotStoredError
	case hasTrailers(rw.Header()): // the live map: trailers come after the body
		reason = NotStoredTrailer
	default:
		reason = r.responseReason(rw.status, sent)
	}
	if reason != "" {
		r.stats.addNotStored(reason)
		return res
	}
	snap := make([]backend.CounterSnap, len(names))
	for i, n := range names {
		snap[i] = backend.CounterSnap{Name: strings.Clone(n), Value: vals[i]}
	}
	e := r.newEntry(rw.status, storedHeader(canonicalHeader(rw.before), sent), rw.body, canonical, snap, start)
	e.Producer = rt
	if e.ETag = e.Header.Get("Etag"); e.ETag == "" {
		e.ETag = strongETag(e.Body)
		e.Header["Etag"] = []string{e.ETag}
	}
	if e.Header.Get("Last-Modified") == "" {
		e.Header["Last-Modified"] = []string{start.UTC().Format(http.TimeFormat)}
	}
	e.Prepare()
	storeCtx, cancelStore := context.WithTimeout(context.WithoutCancel(req.Context()), r.cfg.FillTimeout)
	defer cancelStore()
	if !r.storeEntry(storeCtx, skey, e) {
		return res
	}
	// Hand the entry to waiters only if no invalidation landed meanwhile.
	now := make([]uint64, len(names))
	if cerr := r.be.Counters(storeCtx, names, now); cerr == nil {
		for i := range now {
			if now[i] != vals[i] {
				return res
			}
		}
		res.handed = e
	}
	return res
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

// refresh recomputes an entry after its (stale or early-expiring) copy
// was sent: the response is flushed first so the client is not kept
// waiting, then the handler runs, on this request's goroutine (Gin and
// Echo recycle their contexts once a request returns, so it cannot move
// to another) with a held-back writer and a detached context. At most one
// refresh per key runs in this process, and at most MaxRefreshes per
// region; a refresh that cannot start is skipped.
func (rt *Route) refresh(w http.ResponseWriter, req *http.Request, skey, canonical string, names []string, vals []uint64, next nextFunc) {
	r := rt.r
	// Join first: a request finding the key already being filled or
	// refreshed has nothing to do, and must not count as skipped for
	// MaxRefreshes, which bounds refreshes of distinct keys.
	f, leader := r.flights.join(skey, r.cfg.FillTimeout)
	if !leader {
		return
	}
	skey, canonical = strings.Clone(skey), strings.Clone(canonical)
	var stored *backend.Entry
	var fail *failure
	failed := true
	defer func() { r.flights.landResult(skey, f, stored, failed, fail) }()
	select {
	case r.refreshSem <- struct{}{}:
		defer func() { <-r.refreshSem }()
	default:
		r.stats.refreshSkipped.Add(1)
		failed = false
		return
	}
	// One refresh across instances too: whoever holds the lease does it.
	if l, ok := r.be.(backend.Leaser); ok && r.cfg.LeaseTTL > 0 {
		lkey := r.leaseKey(canonical)
		token, got, lerr := l.Acquire(req.Context(), lkey, r.cfg.LeaseTTL)
		if lerr != nil || !got {
			failed = false
			return
		}
		defer func() { _ = l.Release(context.WithoutCancel(req.Context()), lkey, token) }()
	}
	_ = http.NewResponseController(w).Flush()
	sink := &sinkWriter{h: http.Header{}}
	rw := &recorder{w: sink, before: http.Header{}, record: true, max: r.cfg.MaxEntryBytes, hold: true, hdr: http.Header{}}
	r.stats.refreshes.Add(1)
	res := rt.produce(rw, req, skey, canonical, names, vals, next, true)
	stored, failed, fail = res.handed, res.failed, res.fail
	if res.err != nil {
		r.c.log.Warn("routecache: background refresh failed", "region", r.name, "err", res.err)
	}
}

// sinkWriter absorbs a background refresh's response.
type sinkWriter struct{ h http.Header }

func (s *sinkWriter) Header() http.Header { return s.h }

func (s *sinkWriter) WriteHeader(int) {}

func (s *sinkWriter) Write(b []byte) (int, error) { return len(b), nil }
