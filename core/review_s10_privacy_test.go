package core_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Review s10: the promise "never one user's page to another", tried
// through real requests where earlier reviews did not look.

// statusHookWriter is an outer middleware's writer that sets headers as
// the status goes out, as session managers do when they save a session
// the handler changed (alexedwards/scs's LoadAndSave writes its cookie in
// its writer's WriteHeader) and as Echo's Response.Before hooks do.
type statusHookWriter struct {
	http.ResponseWriter
	hook func(h http.Header)
	sent bool
}

func (w *statusHookWriter) WriteHeader(code int) {
	if !w.sent {
		w.sent = true
		w.hook(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusHookWriter) Write(b []byte) (int, error) {
	if !w.sent {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// A header an outer middleware's writer adds as the status goes out
// reaches the client with the response: a Set-Cookie, Cache-Control:
// private or unkeyed Vary added there keeps the response out of the
// cache, as it would if the handler had set it. Each visitor gets the
// page made for them. A harmless header added there does not stop
// storing (and is the middleware's on every response).
func TestHeadersSetAsTheStatusGoesOutAreJudged(t *testing.T) {
	type sidKey struct{}
	for _, tc := range []struct {
		name   string
		set    func(h http.Header, sid string)
		shared bool
	}{
		{"set-cookie", func(h http.Header, sid string) { h.Add("Set-Cookie", "session="+sid) }, false},
		{"set-cookie-lower", func(h http.Header, sid string) { h["set-cookie"] = []string{"session=" + sid} }, false},
		{"private", func(h http.Header, sid string) { h.Set("Cache-Control", "private") }, false},
		{"vary", func(h http.Header, sid string) { h.Set("Vary", "Origin") }, false},
		{"request-id", func(h http.Header, sid string) { h.Set("X-Request-Id", sid) }, true},
		// As many headers as before: one replaced by another.
		{"set-cookie-in-place", func(h http.Header, sid string) { h.Del("X-Pending"); h.Add("Set-Cookie", "session="+sid) }, false},
		{"private-in-place", func(h http.Header, sid string) { h.Del("X-Pending"); h.Set("Cache-Control", "private") }, false},
		{"vary-in-place", func(h http.Header, sid string) { h.Del("X-Pending"); h.Set("Vary", "Origin") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mw, err := c.Middleware("r")
			if err != nil {
				t.Fatal(err)
			}
			var n atomic.Int32
			page := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// The handler starts a session and puts its token in the page.
				sid := fmt.Sprintf("visitor-%d", n.Add(1))
				*r.Context().Value(sidKey{}).(*string) = sid
				w.Header().Set("X-Pending", "1") // what a hook may replace
				fmt.Fprintf(w, "form token of %s", sid)
			}))
			mux := http.NewServeMux()
			mux.Handle("GET /page", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// The session middleware, outside the cache.
				sid := new(string)
				hw := &statusHookWriter{ResponseWriter: w, hook: func(h http.Header) {
					if *sid != "" {
						tc.set(h, *sid)
					}
				}}
				page.ServeHTTP(hw, r.WithContext(context.WithValue(r.Context(), sidKey{}, sid)))
			}))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			bodies := map[string]bool{}
			for i := 0; i < 3; i++ {
				resp, err := srv.Client().Get(srv.URL + "/page")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				bodies[string(b)] = true
				if !tc.shared && resp.Header.Get("X-Cache") == "HIT" {
					t.Fatalf("visitor %d got a stored page sent to another with its %s: %q", i+1, tc.name, b)
				}
			}
			st := c.Stats()["r"]
			if tc.shared {
				if len(bodies) != 1 || st.Stores != 1 || st.Hits != 2 {
					t.Fatalf("a harmless late header stopped storing: %d bodies, %d stores, %d hits", len(bodies), st.Stores, st.Hits)
				}
				return
			}
			if len(bodies) != 3 || st.Stores != 0 {
				t.Fatalf("%d distinct pages for 3 visitors, %d stores", len(bodies), st.Stores)
			}
		})
	}
}

// The same with the response held back for a stale-if-error fallback: it
// goes out, through the outer middleware's writer, when the handler has
// returned, and is judged with what that writer added then.
func TestHeldResponseJudgedWithHeadersSetAsItGoesOut(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute})
	var calls atomic.Int64
	var sid string
	next := func(w http.ResponseWriter, r *http.Request) error {
		n := calls.Add(1)
		if n > 1 {
			sid = fmt.Sprintf("visitor-%d", n) // a new session
		}
		fmt.Fprintf(w, "page %d", n)
		return nil
	}
	serve := func() (*httptest.ResponseRecorder, string) {
		rec := httptest.NewRecorder()
		sid = ""
		hw := &statusHookWriter{ResponseWriter: rec, hook: func(h http.Header) {
			if sid != "" {
				h.Add("Set-Cookie", "session="+sid)
			}
		}}
		_ = adapter.ServeRoute(rt, hw, httptest.NewRequest("GET", "/items/1", nil), noParams, staleTestPattern, next)
		return rec, rec.Header().Get("Set-Cookie")
	}
	if w, _ := serve(); xc(w) != "MISS" {
		t.Fatalf("fill: %q", xc(w))
	}
	waitState(t, rt, "/items/1", core.ErrorOnly)
	if w, ck := serve(); w.Body.String() != "page 2" || ck != "session=visitor-2" {
		t.Fatalf("held response: %q with cookie %q", w.Body.String(), ck)
	}
	if st := rt.Region().Stats(); st.Stores != 1 {
		t.Fatalf("the held response sent with a session cookie was stored (%d stores)", st.Stores)
	}
	if w, _ := serve(); xc(w) == "HIT" {
		t.Fatalf("another visitor got the page sent with a session cookie: %q", w.Body.String())
	}
}

// A Cookie line holding a cookie Go's parser drops (bytes it refuses in
// a name or value) still carries it to a handler that reads the header
// itself or parses it more leniently: such a request bypasses unless the
// dropped cookie's name is one the region ignores. Anonymous visitors
// keep sharing their page.
func TestUnparsedCookieBypasses(t *testing.T) {
	rc := core.RegionConfig{IgnoreCookies: []string{"_ga"}}
	_, srv := secApp(t, rc, "GET /page", func(w http.ResponseWriter, r *http.Request) {
		// A lenient reader of the raw header.
		for _, line := range r.Header.Values("Cookie") {
			for _, part := range strings.Split(line, ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(part), "session="); ok {
					fmt.Fprintf(w, "page of %s", v)
					return
				}
			}
		}
		fmt.Fprint(w, "anonymous page")
	})
	anon := func(want string) {
		t.Helper()
		if v := rawDo(t, srv, "/page"); v.body != "anonymous page" || v.xcache != want {
			t.Fatalf("anonymous visitor: %s %q, want %s", v.xcache, v.body, want)
		}
	}
	anon("MISS")
	anon("HIT")
	for _, line := range []string{
		"Cookie: session=caf\xc3\xa9",
		"Cookie: _ga=1; session=\"alice",
		"Cookie: session=al\\ice",
	} {
		v := rawDo(t, srv, "/page", line)
		if v.xcache != "BYPASS" || !strings.Contains(v.detail, "detail=cookie") || !strings.HasPrefix(v.body, "page of ") {
			t.Fatalf("%q: %s %q %q", line, v.xcache, v.detail, v.body)
		}
	}
	anon("HIT")
	// A dropped cookie the region ignores by name does not bypass.
	if v := rawDo(t, srv, "/page", `Cookie: _ga={"id":"x y"}`); v.xcache != "HIT" || v.body != "anonymous page" {
		t.Fatalf("an ignored cookie Go drops: %s %q", v.xcache, v.body)
	}
}

// A request target in absolute form ("GET javascript://host/page", which
// clients send to proxies) reaches the handler with the same host and path
// as "GET /page" but with a scheme (URL.Scheme) and a RequestURI of its
// own: a handler building links from them would store the attacker's
// scheme for every visitor of the page. The key holds the target as sent,
// so each form has its own entry.
func TestAbsoluteFormTargetIsKeyedAsSent(t *testing.T) {
	c, srv := secApp(t, core.RegionConfig{}, "GET /page", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "scheme=%q uri=%q", r.URL.Scheme, r.RequestURI)
	})
	const withPassword = "http://alice:s3cret@example.test/page"
	targets := []string{"javascript://example.test/page", "http://example.test/page", "https://example.test/page", "http://alice@example.test/page", withPassword}
	for _, want := range []string{"MISS", "HIT"} {
		for _, target := range targets {
			a := rawDo(t, srv, target)
			scheme, _, _ := strings.Cut(target, ":")
			if a.xcache != want || a.body != fmt.Sprintf("scheme=%q uri=%q", scheme, target) {
				t.Fatalf("%s: %s %q, want %s", target, a.xcache, a.body, want)
			}
			v := rawDo(t, srv, "/page")
			if v.body != `scheme="" uri="/page"` {
				t.Fatalf("after %s, a visitor got %s %q", target, v.xcache, v.body)
			}
		}
	}
	// The target enters the key by HMAC: a password in it never reaches
	// the key stored in the entry (nor the backend holding it).
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", withPassword, nil) // as the server read it
	canonical, _, ok := core.CanonicalKey(rt, req, adapter.PathValues{R: req}, "GET /page")
	e, _ := core.RegionBackend(c, "r").Load(context.Background(), core.StorageKey(rt, req, adapter.PathValues{R: req}, "GET /page"), nil, nil)
	if !ok || e == nil {
		t.Fatalf("no entry under the key of %s", withPassword)
	}
	if strings.Contains(canonical+e.Key, "s3cret") {
		t.Fatalf("the password of %s is in the stored key", withPassword)
	}
}

// A Key template names the entry, replacing the default key and the host
// in it (docs/http-semantics.md, docs/security.md): requests to two hosts
// share one entry unless the template names the host ({header:Host},
// TestVaryHostKeepsHostsApart). What examples/shared-regions relies on,
// and what a route whose page depends on the host must not use.
func TestKeyTemplateSharesOneEntryAcrossHosts(t *testing.T) {
	_, srv := secApp(t, core.RegionConfig{}, "GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s of %s", r.PathValue("id"), r.Host)
	}, core.Key("item:{id}"))
	for i, host := range []string{"a.example", "b.example"} {
		v := secDo(t, srv, "GET", "/items/1", nil, "Host", host)
		if want := []string{"MISS", "HIT"}[i]; v.body != "item 1 of a.example" || v.xcache != want {
			t.Fatalf("%s: %s %q, want %s of a.example's page", host, v.xcache, v.body, want)
		}
	}
}

// Go's server moves the Host header to Request.Host and deletes it from
// Request.Header: a region that declares it varies on Host (VaryHeaders,
// or a Key template's {header:Host}) and a handler answering with Vary:
// Host, or a template naming {header:Host}, must still keep hosts apart, or be refused when the Cache is built.
func TestVaryHostKeepsHostsApart(t *testing.T) {
	for name, tc := range map[string]struct {
		rc   core.RegionConfig
		opts []core.RouteOption
		vary string // the handler's Vary
	}{
		"VaryHeaders": {core.RegionConfig{VaryHeaders: []string{"Host"}}, []core.RouteOption{core.Key("item:{id}")}, "Host"},
		"template":    {core.RegionConfig{}, []core.RouteOption{core.Key("item:{id}:{header:Host}")}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": tc.rc}}); err != nil {
				return // refused: nothing shared
			}
			_, srv := secApp(t, tc.rc, "GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
				if tc.vary != "" {
					w.Header().Set("Vary", tc.vary)
				}
				fmt.Fprintf(w, "item %s of %s", r.PathValue("id"), r.Host)
			}, tc.opts...)
			for _, host := range []string{"a.example", "b.example"} {
				if v := secDo(t, srv, "GET", "/items/1", nil, "Host", host); v.body != "item 1 of "+host {
					t.Fatalf("%s: %s %q", host, v.xcache, v.body)
				}
			}
		})
	}
}
