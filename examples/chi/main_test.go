package main

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/internal/exampletest"
)

// newTestRouter builds the example's Cache and router, closed with the test.
func newTestRouter(t *testing.T) (http.Handler, *atomic.Int64) {
	t.Helper()
	rc, err := newCache()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	var renders atomic.Int64
	h, err := newRouter(rc, &renders)
	if err != nil {
		t.Fatal(err)
	}
	return h, &renders
}

// The /hello/{name} routes pass the scenario the gin and echo examples
// pass: MISS then HIT, one entry per name, and a POST whose tag template
// hello:{name} (filled from chi's parameter) invalidates only that name.
func TestChiExample(t *testing.T) {
	h, renders := newTestRouter(t)
	exampletest.HelloScenario(t, h, renders.Load)
}

// A sub-router's route keyed on "article:{id}": the id is chi's URL
// parameter (the handler reads the same value with chi.URLParam), and
// the query is not part of that key.
func TestChiKeyTemplateReadsURLParam(t *testing.T) {
	h, renders := newTestRouter(t)
	first := exampletest.Do(t, h, "GET", "/articles/7?ref=a")
	if first.Code != http.StatusOK || first.Header().Get("X-Cache") != "MISS" || !strings.HasPrefix(first.Body.String(), "article 7 ") {
		t.Fatalf("first: %d %q %q", first.Code, first.Header().Get("X-Cache"), first.Body.String())
	}
	same := exampletest.Do(t, h, "GET", "/articles/7?ref=b")
	if same.Header().Get("X-Cache") != "HIT" || same.Body.String() != first.Body.String() {
		t.Fatalf("same id, other query: %q %q, want a HIT of %q", same.Header().Get("X-Cache"), same.Body.String(), first.Body.String())
	}
	other := exampletest.Do(t, h, "GET", "/articles/8")
	if other.Header().Get("X-Cache") != "MISS" || !strings.HasPrefix(other.Body.String(), "article 8 ") {
		t.Fatalf("other id: %q %q", other.Header().Get("X-Cache"), other.Body.String())
	}
	if n := renders.Load(); n != 2 {
		t.Fatalf("renders %d, want 2 (one per id)", n)
	}
}

// run listens, announces the address and serves until cancelled.
func TestChiRun(t *testing.T) {
	exampletest.SmokeRun(t, run)
}
