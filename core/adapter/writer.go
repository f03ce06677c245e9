package adapter

import (
	"net/http"

	"github.com/routecache/routecache/core/internal/bridge"
)

// ResponseWriter is the writer the engine hands to a Next on a miss (and
// on an invalidating route). It streams to the client while keeping a
// bounded copy of the response. Adapters wrap it in their framework's
// writer type; Status, Size and Written let them answer their framework's
// questions. AsResponseWriter finds it in the writer a Next receives.
//
// Headers are committed lazily, at the first Write, Flush or when the
// handler returns; as in net/http, the first WriteHeader wins (the Gin
// adapter applies Gin's "last before the first write wins" itself).
// Informational statuses (1xx, except 101) pass straight through. A
// flushed or hijacked response is not stored. A failed client write is
// remembered, not returned: the recorded copy is what coalesced waiters
// receive.
type ResponseWriter interface {
	http.ResponseWriter
	http.Flusher
	http.Hijacker
	// WriteString is Write for strings.
	WriteString(s string) (int, error)
	// WriteHeaderNow commits the status and headers without writing a
	// body (Gin's ResponseWriter has the same method).
	WriteHeaderNow()
	// Status returns the status written or pending, 0 if none yet.
	Status() int
	// Size returns the body bytes written so far.
	Size() int
	// Written reports whether the status line has been committed.
	Written() bool
	// Unwrap returns the client writer, for http.ResponseController.
	Unwrap() http.ResponseWriter
}

// AsResponseWriter returns w as the engine's ResponseWriter when it is one:
// the writer a Next receives on a miss or on an invalidating route. On a
// bypass the Next receives the client's own writer, and ok is false.
func AsResponseWriter(w http.ResponseWriter) (rw ResponseWriter, ok bool) {
	if !bridge.IsRecorder(w) {
		return nil, false
	}
	rw, ok = w.(ResponseWriter)
	return rw, ok
}
