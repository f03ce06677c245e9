package core

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// Review: docs/security.md ("Raw paths") says the key counter "stays on the
// escaped path, so invalidating /a/%3CA reaches every spelling of it", and
// docs/invalidation.md that InvalidateKey "invalidates every variant stored
// under the key". But the counter is named by URL.EscapedPath(), which
// returns RawPath whenever RawPath is a *valid* encoding: /articles/4%32,
// /articles/%34%32 and /articles/caf%c3%a9 (lowercase hex, as an HTML link
// may write it) each get a counter of their own. The handler sees the same
// article (r.URL.Path, Gin's c.Param with its default router), so after
// InvalidateKey(r, "/articles/42") returns nil those spellings keep
// serving the old article until their TTL.
func TestInvalidateKeyReachesEverySpelling(t *testing.T) {
	var version atomic.Int64
	version.Store(1)
	c, srv := secApp(t, RegionConfig{}, "GET /articles/{id}", func(w http.ResponseWriter, r *http.Request) {
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
