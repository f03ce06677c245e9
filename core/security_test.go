package core_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// One test per threat, each through a real HTTP server and the net/http
// middleware (so the request is what a client can really send), checking
// that what one client makes the cache store never reaches another.
// docs/security.md lists the threats, the default that stops each, and
// the test that proves it.

// secApp serves handler on pattern, cached in region "r" of a fresh Cache.
func secApp(t *testing.T, rc core.RegionConfig, pattern string, handler http.HandlerFunc, opts ...core.RouteOption) (*core.Cache, *httptest.Server) {
	t.Helper()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	mw, err := c.Middleware("r", opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(pattern, mw(handler))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return c, srv
}

type secResp struct {
	code   int
	xcache string
	detail string // Cache-Status
	body   string
	header http.Header
}

// secDo sends one request; hdr pairs are added in order (a name given
// twice sends two header lines).
func secDo(t *testing.T, srv *httptest.Server, method, target string, body io.Reader, hdr ...string) secResp {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+target, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return secResp{resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), string(b), resp.Header}
}

// Cache poisoning through forwarding headers the handler reflects (say,
// into absolute links): they are part of every default key, so a
// response built for an attacker's X-Forwarded-Host is stored under a key
// only requests with that same header reach.
func TestSecurityForwardedHeadersArePartOfTheKey(t *testing.T) {
	for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Scheme", "X-Forwarded-Proto", "Forwarded"} {
		t.Run(h, func(t *testing.T) {
			_, srv := secApp(t, core.RegionConfig{}, "GET /page", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `<script src="%s/app.js">`, r.Header.Get(h))
			})
			evil := secDo(t, srv, "GET", "/page", nil, h, "evil.example")
			if !strings.Contains(evil.body, "evil.example") || evil.xcache != "MISS" {
				t.Fatalf("attacker request: %q %q", evil.xcache, evil.body)
			}
			if again := secDo(t, srv, "GET", "/page", nil, h, "evil.example"); again.xcache != "HIT" {
				t.Fatalf("the attacker's own entry should be a hit (it is keyed): %q", again.xcache)
			}
			for i := 0; i < 2; i++ {
				clean := secDo(t, srv, "GET", "/page", nil)
				if strings.Contains(clean.body, "evil") {
					t.Fatalf("poisoned: a request without %s got %q (%s)", h, clean.body, clean.xcache)
				}
			}
			// Values are keyed as a list: two header lines are not one.
			two := secDo(t, srv, "GET", "/page", nil, h, "a.example", h, "evil.example")
			one := secDo(t, srv, "GET", "/page", nil, h, "a.example")
			if one.xcache != "MISS" || strings.Contains(one.body, "evil") {
				t.Fatalf("one value after two: %q %q (two: %q)", one.xcache, one.body, two.body)
			}
		})
	}
}

// X-Original-URL, X-Rewrite-URL and the method overrides make some
// frameworks serve another resource or method under this URL: requests
// carrying one skip the cache (bypass "override"), so the response they
// get is never stored.
func TestSecurityOverrideHeadersBypass(t *testing.T) {
	for _, h := range []string{"X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		t.Run(h, func(t *testing.T) {
			c, srv := secApp(t, core.RegionConfig{}, "GET /public", func(w http.ResponseWriter, r *http.Request) {
				if v := r.Header.Get(h); v != "" {
					fmt.Fprintf(w, "served as %s", v) // the framework honoured the override
					return
				}
				fmt.Fprint(w, "public page")
			})
			for i := 0; i < 2; i++ {
				o := secDo(t, srv, "GET", "/public", nil, h, "/admin")
				if o.xcache != "BYPASS" || !strings.Contains(o.detail, "detail="+string(core.BypassOverride)) || o.body != "served as /admin" {
					t.Fatalf("override request %d: %q %q %q", i, o.xcache, o.detail, o.body)
				}
			}
			if p := secDo(t, srv, "GET", "/public", nil); p.xcache != "MISS" || p.body != "public page" {
				t.Fatalf("after overrides: %q %q", p.xcache, p.body)
			}
			if p := secDo(t, srv, "GET", "/public", nil); p.xcache != "HIT" || p.body != "public page" {
				t.Fatalf("clean entry: %q %q", p.xcache, p.body)
			}
			if st := c.Stats()["r"]; st.Bypasses[core.BypassOverride] != 2 || st.Stores != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A GET with a body (the handler may read it: "fat GET") skips the cache,
// whether the body has a length or is chunked.
func TestSecurityFatGETBypasses(t *testing.T) {
	c, srv := secApp(t, core.RegionConfig{}, "GET /search", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			fmt.Fprintf(w, "results for %s", b)
			return
		}
		fmt.Fprintf(w, "results for %s", r.URL.Query().Get("q"))
	})
	withLength := secDo(t, srv, "GET", "/search?q=cats", strings.NewReader("q=<script>"))
	chunked := secDo(t, srv, "GET", "/search?q=cats", io.MultiReader(strings.NewReader("q=<img onerror>"))) // unknown length: chunked
	for _, r := range []secResp{withLength, chunked} {
		if r.xcache != "BYPASS" || !strings.Contains(r.detail, "detail="+string(core.BypassBody)) || !strings.Contains(r.body, "q=<") {
			t.Fatalf("fat GET: %q %q %q", r.xcache, r.detail, r.body)
		}
	}
	for i, want := range []string{"MISS", "HIT"} {
		if r := secDo(t, srv, "GET", "/search?q=cats", nil); r.xcache != want || r.body != "results for cats" {
			t.Fatalf("clean request %d: %q %q", i, r.xcache, r.body)
		}
	}
	if st := c.Stats()["r"]; st.Bypasses[core.BypassBody] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Parameter cloaking: a cache and the application must agree on what the
// query says. "a=1;b=2" is one malformed pair to Go's parser and two pairs
// to some others; the key keeps such queries raw, so they never share an
// entry with the "&" form, and each is served only its own response.
func TestSecurityParameterCloaking(t *testing.T) {
	pairs := [][2]string{
		{"/p?a=1;b=2", "/p?a=1&b=2"},
		{"/p?a=1%26b=2", "/p?a=1&b=2"},
		{"/p?a=1&callback=x;callback=evil", "/p?a=1&callback=x"},
		{"/p?a=1&a=2", "/p?a=2&a=1"},
		{"/p?a=1&b=2;", "/p?a=1&b=2"},
	}
	for _, pr := range pairs {
		for _, order := range [][2]string{{pr[0], pr[1]}, {pr[1], pr[0]}} {
			t.Run(order[0]+" then "+order[1], func(t *testing.T) {
				// Fresh server per order, so the first request is the one filling.
				_, srv := secApp(t, core.RegionConfig{}, "GET /p", func(w http.ResponseWriter, r *http.Request) {
					q := r.URL.Query()
					fmt.Fprintf(w, "a=%q b=%q callback=%q raw=%s", q.Get("a"), q.Get("b"), q.Get("callback"), r.URL.RawQuery)
				})
				first := secDo(t, srv, "GET", order[0], nil)
				second := secDo(t, srv, "GET", order[1], nil)
				if first.body == second.body {
					t.Fatalf("both got %q", first.body)
				}
				if first.xcache != "MISS" || second.xcache != "MISS" {
					t.Fatalf("shared an entry: %q then %q", first.xcache, second.xcache)
				}
				if again := secDo(t, srv, "GET", order[0], nil); again.body != first.body || again.xcache != "HIT" {
					t.Fatalf("cross-served: %q %q, want HIT %q", again.xcache, again.body, first.body)
				}
				if again := secDo(t, srv, "GET", order[1], nil); again.body != second.body || again.xcache != "HIT" {
					t.Fatalf("cross-served: %q %q, want HIT %q", again.xcache, again.body, second.body)
				}
			})
		}
	}
}

// Web cache deception: "/me/x.css" on a personalised route looks static
// to a path-based cache. Here nothing is decided by the path: a request
// with Authorization skips the cache unless the region keys on it, and
// then each principal has its own entries, keyed by a hash, so the raw
// credential is stored nowhere.
func TestSecurityWebCacheDeception(t *testing.T) {
	me := func(w http.ResponseWriter, r *http.Request) {
		user := "anonymous"
		if a := r.Header.Get("Authorization"); a != "" {
			user = strings.SplitN(strings.TrimPrefix(a, "Bearer "), "-", 2)[0]
		}
		fmt.Fprintf(w, "account page of %s", user)
	}
	const alice, bob = "Bearer alice-7f3a9c1e5d", "Bearer bob-0b2e8d6c4a"
	t.Run("default: Authorization bypasses", func(t *testing.T) {
		c, srv := secApp(t, core.RegionConfig{}, "GET /me/{rest...}", me)
		a := secDo(t, srv, "GET", "/me/x.css", nil, "Authorization", alice)
		if a.xcache != "BYPASS" || a.body != "account page of alice" {
			t.Fatalf("alice: %q %q", a.xcache, a.body)
		}
		for _, want := range []string{"MISS", "HIT"} {
			if r := secDo(t, srv, "GET", "/me/x.css", nil); r.xcache != want || r.body != "account page of anonymous" {
				t.Fatalf("attacker fetching the deceptive URL: %q %q", r.xcache, r.body)
			}
		}
		if st := c.Stats()["r"]; st.Bypasses[core.BypassAuthorization] != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	check := func(t *testing.T, srv *httptest.Server) {
		for _, p := range []struct{ auth, want string }{{alice, "alice"}, {bob, "bob"}, {"", "anonymous"}} {
			var hdr []string
			if p.auth != "" {
				hdr = []string{"Authorization", p.auth}
			}
			for _, x := range []string{"MISS", "HIT"} {
				r := secDo(t, srv, "GET", "/me/x.css", nil, hdr...)
				if r.xcache != x || r.body != "account page of "+p.want {
					t.Fatalf("%s: %q %q, want %s", p.want, r.xcache, r.body, x)
				}
			}
		}
	}
	secrets := []string{"alice-7f3a9c1e5d", "bob-0b2e8d6c4a", "7f3a9c1e5d", "0b2e8d6c4a"}
	t.Run("VaryAuthorization memory", func(t *testing.T) {
		c, srv := secApp(t, core.RegionConfig{VaryAuthorization: true}, "GET /me/{rest...}", me)
		check(t, srv)
		// Scan what the memory backend holds for each principal.
		be := core.RegionBackend(c, "r")
		rt, _ := c.Route("r")
		for _, auth := range []string{alice, bob} {
			// The origin form the client sent (an absolute target is keyed
			// as sent).
			req := httptest.NewRequest("GET", "/me/x.css", nil)
			req.Host = strings.TrimPrefix(srv.URL, "http://")
			req.Header.Set("Authorization", auth)
			req.SetPathValue("rest", "x.css")
			canonical, keyName, ok := core.CanonicalKey(rt, req, adapter.PathValues{R: req}, "GET /me/{rest...}")
			if !ok {
				t.Fatal("no key")
			}
			e, _ := be.Load(context.Background(), core.StorageKey(rt, req, adapter.PathValues{R: req}, "GET /me/{rest...}"), nil, nil)
			if e == nil {
				t.Fatalf("no stored entry under the key computed for %s", auth)
			}
			stored := string(e.Encode()) + canonical + keyName
			for _, s := range secrets {
				if strings.Contains(stored, s) {
					t.Fatalf("raw credential %q stored in the key or entry", s)
				}
			}
		}
	})
	t.Run("VaryAuthorization redis", func(t *testing.T) {
		u := redisURLs(t)["redis"]
		prefix := uniquePrefix(t)
		c, srv := secApp(t, core.RegionConfig{Backend: u, Prefix: prefix, VaryAuthorization: true}, "GET /me/{rest...}", me)
		check(t, srv)
		rb := core.RegionBackend(c, "r").(*redisbe.Backend)
		ctx := context.Background()
		keys, err := rb.Client().Keys(ctx, prefix+":*").Result()
		if err != nil || len(keys) < 3 {
			t.Fatalf("keys %v %v", keys, err)
		}
		for _, k := range keys {
			v, err := rb.Client().Get(ctx, k).Result()
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			for _, s := range secrets {
				if strings.Contains(k, s) || strings.Contains(v, s) {
					t.Fatalf("raw credential %q stored in Redis under %q", s, k)
				}
			}
		}
	})
}

// Set-Cookie is never stored or replayed: a response that sets a cookie
// is not cached, so one visitor's session never reaches another; and a
// request carrying a cookie the region does not key on skips the cache.
func TestSecuritySetCookieNeverShared(t *testing.T) {
	var n atomic.Int64
	c, srv := secApp(t, core.RegionConfig{}, "GET /home", func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie("session"); err != nil {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: fmt.Sprintf("sess-%d", n.Add(1))})
		}
		fmt.Fprint(w, "home")
	})
	first := secDo(t, srv, "GET", "/home", nil)
	second := secDo(t, srv, "GET", "/home", nil)
	if first.xcache != "MISS" || second.xcache != "MISS" {
		t.Fatalf("a Set-Cookie response was stored: %q %q", first.xcache, second.xcache)
	}
	c1, c2 := first.header.Get("Set-Cookie"), second.header.Get("Set-Cookie")
	if c1 == "" || c1 == c2 {
		t.Fatalf("cookies %q %q: the second visitor got the first one's session", c1, c2)
	}
	if st := c.Stats()["r"]; st.NotStored[core.NotStoredSetCookie] != 2 || st.Stores != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A request with a cookie the region ignores neither keys nor bypasses;
	// one with any other cookie bypasses.
	r := secDo(t, srv, "GET", "/home", nil, "Cookie", "session=sess-1")
	if r.xcache != "BYPASS" || !strings.Contains(r.detail, string(core.BypassCookie)) {
		t.Fatalf("cookie request: %q %q", r.xcache, r.detail)
	}
}

// A stored entry never carries a Set-Cookie, even one added by the
// handler after it was found storable elsewhere (e.g. by a framework
// hook); Authorization and Cookie request headers are never keyed raw.
func TestSecurityCookiesKeyedOnlyWhenDeclared(t *testing.T) {
	c, srv := secApp(t, core.RegionConfig{VaryCookies: []string{"lang"}, IgnoreCookies: []string{"_ga"}}, "GET /news", func(w http.ResponseWriter, r *http.Request) {
		lang := "en"
		if ck, err := r.Cookie("lang"); err == nil {
			lang = ck.Value
		}
		fmt.Fprintf(w, "news in %s", lang)
	})
	for _, tc := range []struct{ cookie, want, x string }{
		{"lang=fr", "news in fr", "MISS"},
		{"lang=de", "news in de", "MISS"},
		{"lang=fr; _ga=GA1.1", "news in fr", "HIT"},
		{"", "news in en", "MISS"},
		{"_ga=GA1.2", "news in en", "HIT"},
		{"lang=fr; session=abc", "news in fr", "BYPASS"},
	} {
		var hdr []string
		if tc.cookie != "" {
			hdr = []string{"Cookie", tc.cookie}
		}
		r := secDo(t, srv, "GET", "/news", nil, hdr...)
		if r.xcache != tc.x || r.body != tc.want {
			t.Fatalf("Cookie %q: %q %q, want %s %q", tc.cookie, r.xcache, r.body, tc.x, tc.want)
		}
	}
	if st := c.Stats()["r"]; st.Bypasses[core.BypassCookie] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Responses marked private, no-store, or varying on a header the region
// does not key on are not stored: another client would get a variant
// that was not meant for it.
func TestSecurityPrivateAndUnkeyedVaryNotStored(t *testing.T) {
	for _, tc := range []struct{ name, header, value string }{
		{"private", "Cache-Control", "private, max-age=60"},
		{"no-store", "Cache-Control", "no-store"},
		{"vary user-agent", "Vary", "User-Agent"},
		{"vary star", "Vary", "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := secApp(t, core.RegionConfig{}, "GET /x", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(tc.header, tc.value)
				fmt.Fprintf(w, "for %s", r.UserAgent())
			})
			a := secDo(t, srv, "GET", "/x", nil, "User-Agent", "victim-browser")
			b := secDo(t, srv, "GET", "/x", nil, "User-Agent", "other")
			if a.xcache != "MISS" || b.xcache != "MISS" || b.body != "for other" {
				t.Fatalf("%q %q / %q %q", a.xcache, a.body, b.xcache, b.body)
			}
			if st := c.Stats()["r"]; st.Stores != 0 {
				t.Fatalf("stored: %+v", st)
			}
		})
	}
}

// Oversized header values and very long URLs: the key still works (MISS
// then HIT), nothing panics, and on Memcached every key the backend writes
// stays within its 250-byte limit because keys are hashed.
func TestSecurityOversizedHeadersAndURLs(t *testing.T) {
	longPath := "/big/" + strings.Repeat("p", 16<<10)
	longQuery := "?q=" + strings.Repeat("q", 16<<10) + "&tag=" + strings.Repeat("t", 300)
	longHeader := strings.Repeat("h", 32<<10)
	run := func(t *testing.T, rc core.RegionConfig) *core.Cache {
		c, srv := secApp(t, rc, "GET /big/{rest...}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%d %d %d", len(r.URL.Path), len(r.URL.RawQuery), len(r.Header.Get("X-Long")))
		}, core.Tags("t:{query:tag}", "h:{header:X-Long}"))
		for _, want := range []string{"MISS", "HIT"} {
			r := secDo(t, srv, "GET", longPath+longQuery, nil, "X-Long", longHeader, "X-Forwarded-Host", longHeader)
			if r.code != 200 || r.xcache != want || r.body != fmt.Sprintf("%d %d %d", len(longPath), len(longQuery)-1, len(longHeader)) {
				t.Fatalf("%d %q %q, want %s", r.code, r.xcache, r.body, want)
			}
		}
		// A different value of the keyed header is another entry.
		if r := secDo(t, srv, "GET", longPath+longQuery, nil, "X-Long", longHeader+"x", "X-Forwarded-Host", longHeader); r.xcache != "MISS" {
			t.Fatalf("long values collide: %q", r.xcache)
		}
		if st := c.Stats()["r"]; st.Errors != 0 || st.Corrupt != 0 {
			t.Fatalf("stats %+v", st)
		}
		return c
	}
	t.Run("memory", func(t *testing.T) { run(t, core.RegionConfig{VaryHeaders: []string{"X-Long"}}) })
	t.Run("memcached", func(t *testing.T) {
		addrs := mcAddrs(t)
		c := run(t, core.RegionConfig{VaryHeaders: []string{"X-Long"}, Backend: mcURL(addrs, ""), Prefix: mcPrefix()})
		// Every name the backend uses for this request fits Memcached's rules.
		rt, _ := c.Route("r", core.Tags("t:{query:tag}", "h:{header:X-Long}"))
		req := httptest.NewRequest("GET", longPath+longQuery, nil)
		req.Header.Set("X-Long", longHeader)
		req.SetPathValue("rest", strings.TrimPrefix(longPath, "/big/"))
		names, ok := core.CounterNames(rt, req, adapter.PathValues{R: req}, "GET /big/{rest...}")
		if !ok {
			t.Fatal("no key")
		}
		for _, k := range append([]string{core.StorageKey(rt, req, adapter.PathValues{R: req}, "GET /big/{rest...}")}, names...) {
			if len(k) > 250 || strings.ContainsAny(k, " \r\n\t\x00") {
				t.Fatalf("memcache key of %d bytes or with a space/control byte: %.80q", len(k), k)
			}
		}
	})
	t.Run("very long request line is refused by net/http, not the cache", func(t *testing.T) {
		// Past the server's MaxHeaderBytes (1 MiB) the request never reaches
		// the cache: nothing to store, nothing to panic.
		_, srv := secApp(t, core.RegionConfig{}, "GET /big/{rest...}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "x") })
		r := secDo(t, srv, "GET", "/big/"+strings.Repeat("z", 2<<20), nil)
		if r.code != http.StatusRequestHeaderFieldsTooLarge && r.code != http.StatusRequestURITooLong && r.code != http.StatusBadRequest {
			t.Fatalf("status %d", r.code)
		}
	})
}

// Key collisions: pairs of requests an attacker can make look alike in a
// naive key (concatenation, unescaping, case folding). Each request of a
// pair must get its own response, through full HTTP.
func TestSecurityKeyCollisions(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s path=%s raw=%s query=%s xv=%q", r.Host, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header.Values("X-V"))
	}
	type req struct {
		target string
		hdr    []string
	}
	pairs := []struct {
		name string
		a, b req
	}{
		{"query & vs escaped", req{"/a?a=1&b=2", nil}, req{"/a?a=1%26b%3D2", nil}},
		{"slash vs %2F", req{"/a/b", nil}, req{"/a%2Fb", nil}},
		{"path vs query", req{"/ab", nil}, req{"/a?b", nil}},
		{"empty value", req{"/a?x=1", nil}, req{"/a?x=1&x=", nil}},
		{"case in path", req{"/A", nil}, req{"/a", nil}},
		{"host", req{"/a", []string{"Host", "a.example"}}, req{"/a", []string{"Host", "b.example"}}},
		{"host vs path", req{"/b/c", []string{"Host", "a.example"}}, req{"/c", []string{"Host", "a.example/b"}}},
		{"header list vs one value", req{"/a", []string{"X-V", "1,2"}}, req{"/a", []string{"X-V", "1", "X-V", "2"}}},
		{"header empty vs absent", req{"/a", []string{"X-V", ""}}, req{"/a", nil}},
		{"header vs query", req{"/a?xv=1", nil}, req{"/a", []string{"X-V", "1"}}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			_, srv := secApp(t, core.RegionConfig{VaryHeaders: []string{"X-V"}}, "GET /", echo)
			a := secDo(t, srv, "GET", p.a.target, nil, p.a.hdr...)
			b := secDo(t, srv, "GET", p.b.target, nil, p.b.hdr...)
			if a.code != 200 || b.code != 200 {
				t.Skipf("not a valid request pair here: %d %d", a.code, b.code)
			}
			if a.body == b.body {
				t.Fatalf("the origin cannot tell them apart (%q): a useless pair", a.body)
			}
			if b.xcache != "MISS" {
				t.Fatalf("collision: second request %q got %q %q", p.b.target, b.xcache, b.body)
			}
			if r := secDo(t, srv, "GET", p.a.target, nil, p.a.hdr...); r.xcache != "HIT" || r.body != a.body {
				t.Fatalf("a: %q %q", r.xcache, r.body)
			}
			if r := secDo(t, srv, "GET", p.b.target, nil, p.b.hdr...); r.xcache != "HIT" || r.body != b.body {
				t.Fatalf("b: %q %q", r.xcache, r.body)
			}
		})
	}
	// Key templates: values containing the template's separators.
	t.Run("template separators", func(t *testing.T) {
		_, srv := secApp(t, core.RegionConfig{}, "GET /t", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "a=%s b=%s", r.URL.Query().Get("a"), r.URL.Query().Get("b"))
		}, core.Key("t:{query:a}:{query:b}"))
		a := secDo(t, srv, "GET", "/t?a="+url.QueryEscape("1:2")+"&b=3", nil)
		b := secDo(t, srv, "GET", "/t?a=1&b="+url.QueryEscape("2:3"), nil)
		if a.body == b.body || b.xcache != "MISS" {
			t.Fatalf("template values collide: %q %q / %q %q", a.xcache, a.body, b.xcache, b.body)
		}
	})
}

// The purge endpoint refuses requests without the right bearer token, and
// such a request invalidates nothing; PURGE on a cached route is just a
// method the cache does not handle.
func TestSecurityPurgeRequiresToken(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PurgeHandler(core.PurgeConfig{}); err == nil {
		t.Fatal("a purge handler without a token was built")
	}
	ph, err := c.PurgeHandler(core.PurgeConfig{Token: "op-secret"})
	if err != nil {
		t.Fatal(err)
	}
	mw, _ := c.Middleware("r", core.Tags("articles"))
	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.Handle("/_cache/purge", ph)
	mux.Handle("/articles", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "articles %d", calls.Add(1))
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	secDo(t, srv, "GET", "/articles", nil)
	for _, auth := range []string{"", "Bearer wrong", "Bearer op-secretx", "Basic b3Atc2VjcmV0", "op-secret"} {
		var hdr []string
		if auth != "" {
			hdr = []string{"Authorization", auth}
		}
		r := secDo(t, srv, "POST", "/_cache/purge", strings.NewReader(`{"tags":["articles"]}`), append(hdr, "Content-Type", "application/json")...)
		if r.code != http.StatusUnauthorized {
			t.Fatalf("purge with Authorization %q: %d %s", auth, r.code, r.body)
		}
		r = secDo(t, srv, "PURGE", "/_cache/purge", nil, append(hdr, "Surrogate-Key", "articles")...)
		if r.code != http.StatusUnauthorized {
			t.Fatalf("PURGE with Authorization %q: %d %s", auth, r.code, r.body)
		}
	}
	if r := secDo(t, srv, "PURGE", "/articles", nil); r.xcache != "BYPASS" {
		t.Fatalf("PURGE on the route: %q", r.xcache)
	}
	if r := secDo(t, srv, "GET", "/articles", nil); r.xcache != "HIT" || r.body != "articles 1" {
		t.Fatalf("an unauthenticated purge invalidated the entry: %q %q", r.xcache, r.body)
	}
	if r := secDo(t, srv, "POST", "/_cache/purge", strings.NewReader(`{"tags":["articles"]}`), "Authorization", "Bearer op-secret"); r.code != 200 {
		t.Fatalf("authorised purge: %d %s", r.code, r.body)
	}
	if r := secDo(t, srv, "GET", "/articles", nil); r.xcache != "MISS" {
		t.Fatalf("after an authorised purge: %q", r.xcache)
	}
}

// A client's request Cache-Control does not force an origin hit: any
// client could otherwise turn the cache off for a hot key (load
// amplification). Invalidation is the server's business.
func TestSecurityClientCacheControlDoesNotBypass(t *testing.T) {
	var calls atomic.Int64
	_, srv := secApp(t, core.RegionConfig{TTL: time.Minute}, "GET /hot", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hot %d", calls.Add(1))
	})
	secDo(t, srv, "GET", "/hot", nil)
	for _, cc := range []string{"no-cache", "no-store", "max-age=0"} {
		if r := secDo(t, srv, "GET", "/hot", nil, "Cache-Control", cc, "Pragma", "no-cache"); r.xcache != "HIT" {
			t.Fatalf("Cache-Control %q: %q", cc, r.xcache)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("origin calls %d", calls.Load())
	}
}
