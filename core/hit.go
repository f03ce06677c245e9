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
func notModified(req *http.Request, e *backend.Entry) bool {
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		return etagMatches(inm, e.ETag)
	}
	if ims := req.Header.Get("If-Modified-Since"); ims != "" && !e.LastModified.IsZero() {
		t, err := http.ParseTime(ims)
		if err != nil {
			return false
		}
		return !e.LastModified.Truncate(time.Second).After(t)
	}
	return false
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

// replay writes an entry to w as the answer to req. state is "HIT" or
// "STALE". Header values are the entry's own slices, shared read-only.
func (r *Region) replay(w http.ResponseWriter, req *http.Request, e *backend.Entry, now int64, state string) {
	if o := r.observer(); o != nil {
		if state == "STALE" {
			o.Stale(r.name)
		} else {
			o.Hit(r.name)
		}
	}
	h := w.Header()
	for _, hv := range e.Replayed {
		h[hv.Name] = hv.Values
	}
	age := (now - e.Created) / int64(time.Second)
	if age < 0 {
		age = 0
	}
	hh := e.HitHeaders(age, (e.FreshUntil-now)/int64(time.Second))
	h["Age"] = hh.AgeV
	h["Cache-Status"] = hh.CacheStatus
	if state == "STALE" {
		h["X-Cache"] = xCacheStale
	} else {
		h["X-Cache"] = xCacheHit
	}
	if e.Status == http.StatusOK && (len(req.Header) > 0 && notModified(req, e)) {
		delete(h, "Content-Type")
		delete(h, "Content-Length")
		delete(h, "Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(e.Status)
	if req.Method != http.MethodHead && len(e.Body) > 0 {
		_, _ = w.Write(e.Body)
	}
}
