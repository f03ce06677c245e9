package core_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// A response held back for stale-if-error is judged as it is released,
// not as its headers stood at its first write: a Set-Cookie the handler
// adds after writing its body (the headers are not sent yet) keeps it
// from being stored, though the commit found it storable.
func TestHeldResponseJudgedAsReleased(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute})
	if w := serveNext(rt, "GET", "/items/1", func(w http.ResponseWriter, r *http.Request) error {
		fmt.Fprint(w, "first")
		return nil
	}); xc(w) != "MISS" {
		t.Fatalf("fill: %q", xc(w))
	}
	waitState(t, rt, "/items/1", core.ErrorOnly)
	w := serveNext(rt, "GET", "/items/1", func(w http.ResponseWriter, r *http.Request) error {
		fmt.Fprint(w, "mine")
		w.Header().Set("Set-Cookie", "session=alice")
		return nil
	})
	if w.Body.String() != "mine" || w.Header().Get("Set-Cookie") != "session=alice" {
		t.Fatalf("held response: %q %v", w.Body.String(), w.Header())
	}
	if st := rt.Region().Stats(); st.Stores != 1 || st.NotStored[core.NotStoredSetCookie] != 1 {
		t.Fatalf("a response with a late Set-Cookie: stats %+v", st)
	}
	if w := serveNext(rt, "GET", "/items/1", func(w http.ResponseWriter, r *http.Request) error {
		fmt.Fprint(w, "third")
		return nil
	}); w.Body.String() != "third" || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("after: %q %q %v", xc(w), w.Body.String(), w.Header())
	}
}

// The Last-Modified a fill adds to its entry (the fill's start) is the
// one hits answer If-Modified-Since with: 304 for that date, 200 for a
// second before.
func TestFillLastModifiedAnswersIfModifiedSince(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{})
	next := func(w http.ResponseWriter, r *http.Request) error {
		fmt.Fprint(w, "body")
		return nil
	}
	serve := func(ims string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/items/1", nil)
		if ims != "" {
			req.Header.Set("If-Modified-Since", ims)
		}
		_ = adapter.ServeRoute(rt, w, req, noParams, staleTestPattern, next)
		return w
	}
	t0 := time.Now()
	if w := serve(""); xc(w) != "MISS" {
		t.Fatalf("fill: %q", xc(w))
	}
	w := serve("")
	lm := w.Header().Get("Last-Modified")
	at, err := http.ParseTime(lm)
	if xc(w) != "HIT" || err != nil || at.After(time.Now()) || at.Before(t0.Truncate(time.Second)) {
		t.Fatalf("hit: %q Last-Modified %q (%v)", xc(w), lm, err)
	}
	if w := serve(lm); w.Code != http.StatusNotModified || xc(w) != "HIT" {
		t.Fatalf("If-Modified-Since its Last-Modified: %d %q", w.Code, xc(w))
	}
	if w := serve(at.Add(-time.Second).Format(http.TimeFormat)); w.Code != 200 || w.Body.String() != "body" || w.Header().Get("Last-Modified") != lm {
		t.Fatalf("If-Modified-Since a second before: %d %q %q", w.Code, w.Body.String(), w.Header().Get("Last-Modified"))
	}
}

// An entry keeps the handler's replayable headers only, whether or not
// its snapshot needed keepStored's pass (a clean one skips it): not the
// Date or Content-Length it sent, nor a header named by Connection, nor
// one without a value, nor a header an outer middleware had set to the
// same value before the cache ran.
func TestFillStoresReplayableHeadersOnly(t *testing.T) {
	for i, extra := range []http.Header{nil, {"Connection": {"X-Hop"}, "X-Hop": {"h"}}, {"Empty": {}}, {"X-Outer": {"o"}}} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rt := testRoute(t, core.RegionConfig{})
			next := func(w http.ResponseWriter, r *http.Request) error {
				h := w.Header()
				h["Content-Type"] = []string{"text/plain"}
				h["Date"] = []string{"Mon, 02 Jan 2006 15:04:05 GMT"}
				h["Content-Length"] = []string{"2"}
				for k, vs := range extra {
					h[k] = vs
				}
				_, _ = w.Write([]byte("ok"))
				return nil
			}
			serve := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				if _, ok := extra["X-Outer"]; ok {
					w.Header().Set("X-Outer", "o") // set before the cache ran
				}
				_ = adapter.ServeRoute(rt, w, httptest.NewRequest("GET", "/items/1", nil), noParams, staleTestPattern, next)
				return w
			}
			if w := serve(); xc(w) != "MISS" {
				t.Fatalf("fill: %q", xc(w))
			}
			w := httptest.NewRecorder() // no outer middleware: what the entry holds
			_ = adapter.ServeRoute(rt, w, httptest.NewRequest("GET", "/items/1", nil), noParams, staleTestPattern, next)
			h := w.Header()
			if xc(w) != "HIT" || h.Get("Content-Type") != "text/plain" || h.Get("Content-Length") != "2" || w.Body.String() != "ok" {
				t.Fatalf("hit: %q %v %q", xc(w), h, w.Body.String())
			}
			for _, k := range []string{"Date", "Connection", "X-Hop", "Empty", "X-Outer"} {
				if _, ok := h[k]; ok {
					t.Errorf("%s replayed: %v", k, h)
				}
			}
		})
	}
}
