package core

import (
	"net/http"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"
)

func setBypass(w http.ResponseWriter, reason BypassReason) {
	h := w.Header()
	h["X-Cache"] = []string{"BYPASS"}
	h["Cache-Status"] = []string{"routecache; fwd=bypass; detail=" + string(reason)}
}

func setMiss(rw *recorder) {
	h := rw.Header()
	h["X-Cache"] = []string{"MISS"}
	h["Cache-Status"] = []string{"routecache; fwd=uri-miss"}
}

func (rt *Route) serve(w http.ResponseWriter, req *http.Request, p params, pattern string, next nextFunc) error {
	r := rt.r
	if r.c.closed.Load() {
		r.stats.addBypass(BypassClosed)
		setBypass(w, BypassClosed)
		return next(w, req)
	}
	if reason := r.requestBypass(req); reason != "" {
		r.stats.addBypass(reason)
		setBypass(w, reason)
		return next(w, req)
	}
	if !r.brk.allow() {
		r.stats.addBypass(BypassBreaker)
		setBypass(w, BypassBreaker)
		return next(w, req)
	}
	st := getState()
	defer putState(st)
	if !rt.build(st, req, p, pattern) {
		r.stats.addBypass(BypassKey)
		setBypass(w, BypassKey)
		return next(w, req)
	}
	canonical := unsafeString(st.key)
	names, vals := st.names, st.vals
	skey := r.storageKeyIn(st, canonical)
	ctx := req.Context()
	e, err := r.lookup(ctx, skey, names, vals)
	if err != nil {
		r.stats.addBypass(BypassBackend)
		setBypass(w, BypassBackend)
		return next(w, req)
	}
	now := nowNano()
	if e != nil && e.FreshUntil-now < int64(clockGuard) {
		// Near or past expiry: decide on the real clock, not the coarse one.
		now = time.Now().UnixNano()
	}
	switch r.classify(ctx, rt, e, canonical, names, vals, now) {
	case fresh:
		r.stats.hits.Add(1)
		r.replay(w, req, e, now, "HIT")
		if r.cfg.EarlyRefresh > 0 && req.Method == http.MethodGet && xfetch(e, now, r.cfg.EarlyRefresh) {
			r.stats.earlyRefreshes.Add(1)
			rt.refresh(w, req, skey, canonical, names, vals, next)
		}
		return nil
	case staleOK:
		// Stale-while-revalidate: answer now, then refresh once.
		r.stats.stale.Add(1)
		r.replay(w, req, e, now, "STALE")
		if req.Method == http.MethodGet {
			rt.refresh(w, req, skey, canonical, names, vals, next)
		}
		return nil
	case errorOnly:
		// Past the stale window but within stale-if-error: the entry may
		// stand in for a failing handler, nothing more.
	default:
		e = nil
	}
	if req.Method == http.MethodHead {
		// A HEAD response has no body to store for GET; run it uncached.
		r.stats.addBypass(BypassHead)
		setBypass(w, BypassHead)
		return next(w, req)
	}
	f, leader := r.flights.join(skey, r.cfg.FillTimeout)
	if !leader {
		return rt.wait(w, req, f, e, names, vals, next)
	}
	// The fill outlives nothing of st, but its results do: copy them.
	return rt.fill(w, req, f, strings.Clone(skey), strings.Clone(canonical), names, vals, e, next)
}

// wait follows another request's fill of the same key. fallback, if
// set, is a stale-if-error entry this request may serve if the fill fails.
func (rt *Route) wait(w http.ResponseWriter, req *http.Request, f *flight, fallback *backend.Entry, names []string, vals []uint64, next nextFunc) error {
	r := rt.r
	timer := time.NewTimer(r.cfg.FillTimeout)
	defer timer.Stop()
	timedOut := false
	select {
	case <-f.done:
	case <-req.Context().Done():
		// The caller gave up; let its handler see the cancelled context as
		// it would without a cache.
		return next(w, req)
	case <-timer.C:
		// The fill outlived FillTimeout (a handler ignoring its context):
		// stop waiting for it, as for a failed fill.
		timedOut = true
	}
	if timedOut || f.e == nil {
		if (timedOut || f.failed) && fallback != nil {
			r.stats.stale.Add(1)
			r.stats.staleIfError.Add(1)
			r.replay(w, req, fallback, time.Now().UnixNano(), "STALE")
			return nil
		}
		switch {
		case timedOut:
			// The fill is stuck past FillTimeout: calling the origin again
			// from every waiter would pile onto whatever it is stuck on.
			replayFailure(w, req, plainFailure(http.StatusGatewayTimeout, detailFillTimeout))
			return nil
		case f.failed && f.fail != nil:
			// The fill failed (5xx, FillTimeout, panic): its failure is
			// shared, as its entry would have been.
			replayFailure(w, req, f.fail)
			return nil
		}
		// The leader's response was not storable (a cookie, private, a
		// stream...) or failed in a way only the framework renders (an
		// error): it was not meant to be shared, so run the handler.
		setMiss(&recorder{w: w})
		return next(w, req)
	}
	// The leader checked its entry against the counters after storing it,
	// but an invalidation may have completed between that check and this
	// request's own lookup: the entry must also match what this request
	// read, or it predates an invalidation this request already saw.
	if !snapshotAgrees(f.e, names, vals) || r.invalidationPending() {
		setMiss(&recorder{w: w})
		return next(w, req)
	}
	r.stats.coalesced.Add(1)
	r.stats.hits.Add(1)
	r.replay(w, req, f.e, time.Now().UnixNano(), "HIT")
	return nil
}

// snapshotAgrees reports whether an entry's counter snapshot agrees with
// the values a waiting request read. A counter that request found missing
// (0) agrees with anything: had an invalidation completed before the
// request looked, it would have created the counter.
func snapshotAgrees(e *backend.Entry, names []string, vals []uint64) bool {
	for i, n := range names {
		if vals[i] == 0 {
			continue
		}
		for _, c := range e.Counters {
			if c.Name == n && c.Value != vals[i] {
				return false
			}
		}
	}
	return true
}
