package core

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// notModified reports whether a conditional request is answered 304 by an
// entry (RFC 9110 §13.1): If-None-Match, with weak comparison, wins over
// If-Modified-Since, which is only checked without it.
func notModified(req *http.Request, e *entry) bool {
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		return etagMatches(inm, e.etag)
	}
	if ims := req.Header.Get("If-Modified-Since"); ims != "" && !e.lastModified.IsZero() {
		t, err := http.ParseTime(ims)
		if err != nil {
			return false
		}
		return !e.lastModified.Truncate(time.Second).After(t)
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

// replay writes an entry to w as the answer to req. state is "HIT" or
// "STALE".
func (r *Region) replay(w http.ResponseWriter, req *http.Request, e *entry, now int64, state string) {
	h := w.Header()
	for k, vs := range e.header {
		// Share the stored slice, capped so an Add by later code copies it.
		h[k] = vs[:len(vs):len(vs)]
	}
	age := (now - e.created) / int64(time.Second)
	if age < 0 {
		age = 0
	}
	ttl := (e.freshUntil - now) / int64(time.Second)
	h["Age"] = []string{strconv.FormatInt(age, 10)}
	h["X-Cache"] = []string{state}
	h["Cache-Status"] = []string{"routecache; hit; ttl=" + strconv.FormatInt(ttl, 10)}
	if e.status == http.StatusOK && notModified(req, e) {
		delete(h, "Content-Type")
		delete(h, "Content-Length")
		delete(h, "Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Length"] = []string{e.contentLength}
	w.WriteHeader(e.status)
	if req.Method != http.MethodHead && len(e.body) > 0 {
		_, _ = w.Write(e.body)
	}
}
