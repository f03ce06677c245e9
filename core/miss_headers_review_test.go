package core_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Headers written under non-canonical names (h["set-cookie"], as
// net/http sends them as written) are judged and filtered as their
// canonical forms: a Set-Cookie or Cache-Control: private in any case is
// never stored; hop-by-hop, per-response and Connection-named headers in
// any case are never replayed.
func TestNonCanonicalHeadersJudgedAndFilteredAsCanonical(t *testing.T) {
	for i, tc := range []struct {
		h      http.Header
		stored bool
		absent []string
	}{
		{http.Header{"set-cookie": {"sid=alice"}}, false, nil},
		{http.Header{"cache-control": {"private"}}, false, nil},
		{http.Header{"SET-COOKIE": {"sid=alice"}, "X-Ok": {"1"}}, false, nil},
		{http.Header{"connection": {"x-hop"}, "x-hop": {"h"}, "x-cache": {"HIT"}, "cache-status": {"forged"},
			"keep-alive": {"timeout=5"}, "proxy-authenticate": {"Basic"}, "upgrade": {"h2c"}, "age": {"100"}, "X-Ok": {"1"}}, true,
			[]string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rt := testRoute(t, core.RegionConfig{})
			runs := 0
			next := func(w http.ResponseWriter, r *http.Request) error {
				runs++
				h := w.Header()
				h["Content-Type"] = []string{"text/plain"}
				for k, vs := range tc.h {
					h[k] = vs
				}
				_, _ = w.Write([]byte("ok"))
				return nil
			}
			get := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				_ = adapter.ServeRoute(rt, w, httptest.NewRequest("GET", "/items/1", nil), noParams, staleTestPattern, next)
				return w
			}
			get()
			w := get()
			if !tc.stored {
				if xc(w) == "HIT" || runs != 2 {
					t.Fatalf("stored: %q after %d runs, %v", xc(w), runs, w.Header())
				}
				return
			}
			if xc(w) != "HIT" {
				t.Fatalf("not stored: %q %v", xc(w), w.Header())
			}
			for k, vs := range w.Header() {
				for _, a := range tc.absent {
					if strings.EqualFold(k, a) {
						t.Errorf("%s replayed: %v", k, vs)
					}
				}
				if strings.EqualFold(k, "X-Cache") && (len(vs) != 1 || vs[0] != "HIT") {
					t.Errorf("X-Cache %v", vs)
				}
				if strings.EqualFold(k, "Age") && strings.Join(vs, ",") == "100" {
					t.Errorf("the handler's Age replayed: %v", vs)
				}
				if strings.EqualFold(k, "Cache-Status") && strings.Contains(strings.Join(vs, ","), "forged") {
					t.Errorf("Cache-Status %v", vs)
				}
			}
		})
	}
}
