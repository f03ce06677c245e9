package echo5adapter_test

import (
	"net/http"
	"testing"

	"github.com/routecache/routecache/internal/benchwriter"
)

// A hit allocates nothing: neither the adapter nor the engine makes a
// closure, an interface value or anything else per request.
func TestHitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked without -race")
	}
	e := benchEcho(t, true)
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	w := benchwriter.New()
	e.ServeHTTP(w, req) // fill
	n := testing.AllocsPerRun(200, func() {
		clear(w.H)
		w.N = 0
		e.ServeHTTP(w, req)
	})
	if got := w.H.Get("X-Cache"); got != "HIT" || w.N != len(body1K) {
		t.Fatalf("X-Cache %q, %d bytes: not a hit", got, w.N)
	}
	if n != 0 {
		t.Fatalf("a hit allocates %v times", n)
	}
}
