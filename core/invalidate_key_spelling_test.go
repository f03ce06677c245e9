package core_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// InvalidateKey by the path in its one escaped form reaches every spelling
// a handler reads as that path (r.URL.Path, Gin's c.Param): /articles/42,
// /articles/4%32, /articles/%34%32; /articles/caf%C3%A9 and the lowercase
// hex an HTML link may use. Key counters are named by that form.
func TestInvalidateKeyReachesEverySpelling(t *testing.T) {
	var version atomic.Int64
	version.Store(1)
	c, srv := secApp(t, core.RegionConfig{}, "GET /articles/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "article %s v%d", r.PathValue("id"), version.Load())
	})
	cases := []struct{ key, canonical string }{
		{"/articles/42", "/articles/42"},
		{"/articles/4%32", "/articles/42"},
		{"/articles/%34%32", "/articles/42"},
		{"/articles/caf%C3%A9", "/articles/caf%C3%A9"},
		{"/articles/caf%c3%a9", "/articles/caf%C3%A9"},
	}
	for _, cs := range cases {
		if got := rawDo(t, srv, cs.key); got.body == "" {
			t.Fatalf("%s: empty", cs.key)
		}
		if got := rawDo(t, srv, cs.key); got.xcache != "HIT" {
			t.Fatalf("%s: not cached (%s)", cs.key, got.xcache)
		}
	}
	// The article changes; the app invalidates its escaped path.
	version.Store(2)
	for _, k := range []string{"/articles/42", "/articles/caf%C3%A9"} {
		if err := c.InvalidateKey(context.Background(), "r", k); err != nil {
			t.Fatal(err)
		}
	}
	for _, cs := range cases {
		got := rawDo(t, srv, cs.key)
		if got.xcache == "HIT" || got.body[len(got.body)-2:] != "v2" {
			t.Errorf("%s after InvalidateKey(%q) returned nil: %s %q (stale)", cs.key, cs.canonical, got.xcache, got.body)
		}
	}
}
