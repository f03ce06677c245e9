package core

import (
	"net/http"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// notModified reports whether a conditional request is answered 304 by an
// entry (RFC 9110 §13.1): If-None-Match, with weak comparison, wins over
// If-Modified-Since, which is only checked without it.
// etag and lastModified are the representation's (compress.go replays
// a gzip entry decoded, with its identity ETag).
func notModified(req *http.Request, etag string, lastModified time.Time) bool {
	// The names are canonical: indexed directly, without Header.Get's
	// canonicalisation of its argument.
	if inm := headerValue(req.Header, "If-None-Match"); inm != "" {
		return etagMatches(inm, etag)
	}
	if ims := headerValue(req.Header, "If-Modified-Since"); ims != "" && !lastModified.IsZero() {
		t, err := http.ParseTime(ims)
		if err != nil {
			return false
		}
		return !lastModified.Truncate(time.Second).After(t)
	}
	return false
}

// headerValue is h.Get(name) for a name in canonical form.
func headerValue(h http.Header, name string) string {
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// etagMatches applies the weak comparison of an If-None-Match list.
func etagMatches(list, etag string) bool {
	if etag == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}

// Header values shared by every response of a kind. Handed out with
// len == cap, so an Add by later code copies instead of writing into them.
var (
	xCacheHit   = []string{"HIT"}
	xCacheStale = []string{"STALE"}
)

// representation is a representation of an entry other than its own
// (compress.go: a gzip entry decoded): the headers, ETag and body a
// replay writes instead of the entry's.
type representation struct {
	replayed []backend.HeaderValues
	etag     string
	body     []byte
}

// replayAs writes an entry to w as the answer to req, with its own
// headers, ETag and body, or alt's when alt is not nil. stale marks a
// stale answer (X-Cache: STALE), HIT otherwise. Header values are shared
// read-only.
func (r *Region) replayAs(w http.ResponseWriter, req *http.Request, e *backend.Entry, now int64, stale bool, alt *representation) {
	replayed := e.Replayed
	if alt != nil {
		replayed = alt.replayed
	}
	h := w.Header()
	for i := range replayed {
		hv := &replayed[i] // not copied: the loop keeps less across the map calls
		h[hv.Name] = hv.Values
	}
	age := (now - e.Created) / int64(time.Second)
	if age < 0 {
		age = 0
	}
	ttl := (e.FreshUntil - now) / int64(time.Second)
	hh := e.LastHitHeaders() // HitHeaders' first case, without its call
	if hh == nil || hh.Age != age || hh.TTL != ttl {
		hh = e.HitHeaders(age, ttl)
	}
	h["Age"] = hh.AgeV
	h["Cache-Status"] = hh.CacheStatus
	if stale {
		h["X-Cache"] = xCacheStale
	} else {
		h["X-Cache"] = xCacheHit
	}
	// The ETag and body are read here, not kept across the map calls.
	etag, body := e.ETag, e.Body
	if alt != nil {
		etag, body = alt.etag, alt.body
	}
	if e.Status == http.StatusOK && (len(req.Header) > 0 && notModified(req, etag, e.LastModified)) {
		delete(h, "Content-Type")
		delete(h, "Content-Length")
		delete(h, "Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(e.Status)
	if req.Method != http.MethodHead && len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// routeFront is a cached route's side of the lifecycle (see front): a hit
// is an HTTP response replayed, the producer is the handler (next, passed
// to each method that runs it), run on the request's goroutine and
// streamed to the client while recorded.
type routeFront struct {
	w   http.ResponseWriter
	req *http.Request
	rw  *recorder // the leader's recorder, once its handler ran
}

func (rf *routeFront) replay(c *call, e *backend.Entry, now int64, ev event) bool {
	// An encoded entry may need decoding (compress.go): always in a
	// compressing region; for a waiter, whose coding the fill did not share.
	if c.r.cfg.Compress || ev == evCoalescedHit {
		if done, ok := rf.replayCoded(c, e, now, ev); done {
			return ok
		}
	}
	r := c.r
	if ev == evHit && r.c.obs.p.Load() == nil {
		// No Observer, no Tracer: a hit is one count (record's work
		// without its table and its two loads of the observers).
		r.stats.n[cHits].Add(1)
	} else {
		r.record(ev)
		c.traceReplay(e, now, ev)
	}
	r.replayAs(rf.w, rf.req, e, now, isStale(ev), nil)
	return true
}

// isStale reports whether a replay counted as ev answers stale.
func isStale(ev event) bool { return ev == evStale || ev == evStaleIfError }

func (rf *routeFront) bypass(reason BypassReason, next nextFunc) error {
	setBypass(rf.w, reason)
	return next(rf.w, rf.req)
}

func (rf *routeFront) settle(c *call, f *flight, o outcome, next nextFunc) error {
	switch o {
	case outOwn:
		// The leader's response went out as its handler wrote it, unless
		// it was held back for a stale-if-error fallback.
		if rw := rf.rw; rw != nil && rw.hold {
			if f.failed && c.staleIfError() {
				return nil
			}
			rw.release()
		}
		if f.panicked != nil {
			panic(f.panicked)
		}
		return f.err
	case outGone:
		// The caller gave up; let its handler see the cancelled context as
		// it would without a cache.
		return next(rf.w, rf.req)
	case outTimedOut:
		// The fill is stuck past FillTimeout: calling the origin again
		// from every waiter would pile onto whatever it is stuck on.
		replayFailure(rf.w, rf.req, plainFailure(http.StatusGatewayTimeout, detailFillTimeout))
		return nil
	case outFailed:
		if f.fail != nil {
			// The fill failed (5xx, FillTimeout, panic): its failure is
			// shared, as its entry would have been.
			replayFailure(rf.w, rf.req, f.fail)
			return nil
		}
	}
	// The leader's response was not storable (a cookie, private, a
	// stream...) or failed in a way only the framework renders (an
	// error), or predates what this request read: it was not meant to be
	// shared, so run the handler.
	setMiss(&recorder{w: rf.w})
	return next(rf.w, rf.req)
}
