// Package benchwriter holds the response writer the benchmarks serve
// into: minimal and reusable, so that the figures are the framework's
// and the cache's, not a recorder's allocations.
package benchwriter

import "net/http"

// Discard is an http.ResponseWriter that keeps its header map, the
// status and the number of body bytes, and drops the body.
type Discard struct {
	H      http.Header
	Status int
	N      int
}

// New returns a Discard with an empty header map.
func New() *Discard { return &Discard{H: http.Header{}} }

// Header returns the header map.
func (w *Discard) Header() http.Header { return w.H }

// WriteHeader records the status.
func (w *Discard) WriteHeader(s int) { w.Status = s }

// Write counts the bytes.
func (w *Discard) Write(b []byte) (int, error) { w.N += len(b); return len(b), nil }

// Reset empties the header map and the counts, for the next request.
func (w *Discard) Reset() {
	clear(w.H)
	w.Status, w.N = 0, 0
}
