package cachetest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// ---------------------------------------------------------------------------
// 11. Route options and per-response lifetimes: TTL, StaleFor, StatusTTL,
// UseCacheControl, SkipIf, KeyFunc, and the Cache-Status that tells why.

func (s *suite) options(t *testing.T) {
	t.Run("RouteTTL", s.optRouteTTL)
	t.Run("RouteStaleFor", s.optRouteStale)
	t.Run("StatusTTL", s.optStatusTTL)
	t.Run("UseCacheControl", s.optCacheControl)
	t.Run("SkipIf", s.optSkipIf)
	t.Run("KeyFunc", s.optKeyFunc)
	t.Run("CacheStatusDetail", s.optCacheStatus)
	t.Run("CDNHeaders", s.optCDNHeaders)
}

// hitTTL returns the ttl parameter of a hit's Cache-Status: the entry's
// remaining freshness in seconds, which shows the lifetime it was given
// without waiting for it to pass.
func hitTTL(t *testing.T, r resp) int {
	t.Helper()
	cs := r.Header.Get("Cache-Status")
	for _, p := range strings.Split(cs, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "ttl="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("Cache-Status %q: bad ttl: %v", cs, err)
			}
			return n
		}
	}
	t.Fatalf("Cache-Status %q has no ttl", cs)
	return 0
}

// counting answers "<name> #n", n counting its calls.
func counting(name string, calls *counter) Handler {
	return func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		text(w, fmt.Sprintf("%s #%d", name, calls.inc()))
	}
}

// waitPast returns once d has passed since from (clock time passing is
// what an expiry test waits for; the checks that follow hold however
// late it returns).
func waitPast(from time.Time, d time.Duration) {
	for time.Since(from) <= d {
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *suite) optRouteTTL(t *testing.T) {
	const short = 60 * time.Millisecond
	var a, b, c counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {TTL: time.Hour}}, App{Routes: []Route{
		{Method: "GET", Path: "/short", Cache: Cached("r", core.TTL(short)), Handler: counting("short", &a)},
		{Method: "GET", Path: "/ten", Cache: Cached("r", core.TTL(10*time.Second)), Handler: counting("ten", &c)},
		{Method: "GET", Path: "/region", Cache: Cached("r"), Handler: counting("region", &b)},
	}})
	// The lifetime each entry got shows in its hits' Cache-Status.
	e.expect(e.get("/ten"), 200, "MISS", "ten #1")
	if ttl := hitTTL(t, e.get("/ten")); ttl < 0 || ttl > 10 {
		t.Fatalf("core.TTL(10s) hit: ttl=%d, want 0..10", ttl)
	}
	e.expect(e.get("/region"), 200, "MISS", "region #1")
	if ttl := hitTTL(t, e.get("/region")); ttl < 3000 {
		t.Fatalf("region TTL 1h hit: ttl=%d, want about 3600", ttl)
	}
	// And it expires on its own clock, while the region's stays.
	before := time.Now()
	e.expect(e.get("/short"), 200, "MISS", "short #1")
	filled := time.Now()
	if r := e.get("/short"); time.Since(before) < short {
		e.expect(r, 200, "HIT", "short #1")
	}
	waitPast(filled, short)
	e.expect(e.get("/short"), 200, "MISS", "short #2")
	e.expect(e.get("/region"), 200, "HIT", "region #1")
}

func (s *suite) optRouteStale(t *testing.T) {
	const ttl = 60 * time.Millisecond
	var a, b counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {TTL: ttl}}, App{Routes: []Route{
		{Method: "GET", Path: "/stale", Cache: Cached("r", core.StaleFor(time.Hour, 0)), Handler: counting("stale", &a)},
		{Method: "GET", Path: "/plain", Cache: Cached("r"), Handler: counting("plain", &b)},
	}})
	e.expect(e.get("/stale"), 200, "MISS", "stale #1")
	e.expect(e.get("/plain"), 200, "MISS", "plain #1")
	filled := time.Now()
	waitPast(filled, ttl)
	// Past the TTL: the route's own stale window serves the old entry and
	// refreshes it (a route refreshes on the request's goroutine, after its
	// response); the region has none, so its route misses.
	e.expect(e.get("/stale"), 200, "STALE", "stale #1")
	e.expect(e.get("/plain"), 200, "MISS", "plain #2")
	if r := e.get("/stale"); r.Body != "stale #2" {
		t.Fatalf("after the stale answer's refresh: %v, want body \"stale #2\"", r)
	}
}

func (s *suite) optStatusTTL(t *testing.T) {
	const short = 60 * time.Millisecond
	var missing, gone counter
	notFound := func(calls *counter, status int) Handler {
		return func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			w.WriteHeader(status)
			fmt.Fprintf(w, "%d #%d", status, calls.inc())
		}
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {TTL: time.Hour, StatusTTL: map[int]time.Duration{404: short}}}, App{Routes: []Route{
		{Method: "GET", Path: "/missing", Cache: Cached("r"), Handler: notFound(&missing, 404)},
		{Method: "GET", Path: "/gone", Cache: Cached("r"), Handler: notFound(&gone, 410)},
	}})
	before := time.Now()
	e.expect(e.get("/missing"), 404, "MISS", "404 #1")
	filled := time.Now()
	r := e.get("/missing")
	if time.Since(before) < short {
		e.expect(r, 404, "HIT", "404 #1")
	}
	waitPast(filled, short)
	e.expect(e.get("/missing"), 404, "MISS", "404 #2")
	// A status listed nowhere is still not stored.
	e.expect(e.get("/gone"), 410, "MISS", "410 #1")
	e.expect(e.get("/gone"), 410, "MISS", "410 #2")
	if n := e.stats("r").NotStored[core.NotStoredStatus]; n != 2 {
		t.Fatalf("NotStored[status] = %d, want 2 (the two 410s)", n)
	}
}

func (s *suite) optCacheControl(t *testing.T) {
	var calls counter
	handler := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		if cc := r.URL.Query().Get("cc"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		text(w, fmt.Sprintf("cc %s #%d", r.URL.Query().Get("cc"), calls.inc()))
	}
	e := s.setup(t, map[string]core.RegionConfig{
		"honour": {TTL: time.Hour, UseCacheControl: true},
		"ignore": {TTL: time.Hour},
	}, App{Routes: []Route{
		{Method: "GET", Path: "/honour", Cache: Cached("honour"), Handler: handler},
		{Method: "GET", Path: "/ignore", Cache: Cached("ignore"), Handler: handler},
	}})
	cases := []struct {
		cc      string
		minTTL  int
		maxTTL  int
		storing bool
	}{
		{cc: "public, max-age=20", minTTL: 0, maxTTL: 20, storing: true},
		{cc: "max-age=3000, s-maxage=30", minTTL: 0, maxTTL: 30, storing: true}, // s-maxage wins for a shared cache
		{cc: "max-age=86400", minTTL: 3000, maxTTL: 3600, storing: true},        // capped by the region's TTL
		{cc: "public", minTTL: 3000, maxTTL: 3600, storing: true},               // no lifetime: the region's
		{cc: "max-age=0", storing: false},
		{cc: "s-maxage=0, max-age=60", storing: false},
	}
	for _, tc := range cases {
		target := "/honour?cc=" + urlQueryEscape(tc.cc)
		first := e.get(target)
		e.expect(first, 200, "MISS", "*")
		second := e.get(target)
		if !tc.storing {
			e.expect(second, 200, "MISS", "*")
			if cs := first.Header.Get("Cache-Status"); !strings.Contains(cs, "detail=cache-control") {
				t.Fatalf("Cache-Control %q: Cache-Status %q, want detail=cache-control", tc.cc, cs)
			}
			continue
		}
		e.expect(second, 200, "HIT", first.Body)
		if ttl := hitTTL(t, second); ttl < tc.minTTL || ttl > tc.maxTTL {
			t.Fatalf("Cache-Control %q: hit ttl=%d, want %d..%d", tc.cc, ttl, tc.minTTL, tc.maxTTL)
		}
	}
	// Without UseCacheControl the directives set nothing.
	target := "/ignore?cc=" + urlQueryEscape("max-age=5")
	e.expect(e.get(target), 200, "MISS", "*")
	if ttl := hitTTL(t, e.get(target)); ttl < 3000 {
		t.Fatalf("UseCacheControl off: hit ttl=%d, want the region's (about 3600)", ttl)
	}
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer(" ", "%20", ",", "%2C", "=", "%3D").Replace(s)
}

func (s *suite) optSkipIf(t *testing.T) {
	var calls counter
	preview := func(r *http.Request) bool { return r.URL.Query().Get("preview") == "1" }
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/page", Cache: Cached("r", core.SkipIf(preview)), Handler: counting("page", &calls)},
	}})
	e.expect(e.get("/page"), 200, "MISS", "page #1")
	e.expect(e.get("/page"), 200, "HIT", "page #1")
	for i := 2; i <= 3; i++ {
		r := e.get("/page?preview=1")
		e.expect(r, 200, "BYPASS", fmt.Sprintf("page #%d", i))
		if cs := r.Header.Get("Cache-Status"); !strings.Contains(cs, "detail=skip") {
			t.Fatalf("SkipIf bypass: Cache-Status %q, want detail=skip", cs)
		}
	}
	e.expect(e.get("/page"), 200, "HIT", "page #1")
	if n := e.stats("r").Bypasses[core.BypassSkip]; n != 2 {
		t.Fatalf("Bypasses[skip] = %d, want 2", n)
	}
}

func (s *suite) optKeyFunc(t *testing.T) {
	var calls counter
	tenant := func(r *http.Request) string { return r.Header.Get("X-Tenant") }
	handler := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		text(w, fmt.Sprintf("tenant %q #%d", r.Header.Get("X-Tenant"), calls.inc()))
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/home", Cache: Cached("r", core.KeyFunc(tenant)), Handler: handler},
	}})
	e.expect(e.get("/home", "X-Tenant", "acme"), 200, "MISS", `tenant "acme" #1`)
	e.expect(e.get("/home", "X-Tenant", "acme"), 200, "HIT", `tenant "acme" #1`)
	e.expect(e.get("/home", "X-Tenant", "globex"), 200, "MISS", `tenant "globex" #2`)
	e.expect(e.get("/home", "X-Tenant", "globex"), 200, "HIT", `tenant "globex" #2`)
	e.expect(e.get("/home"), 200, "MISS", `tenant "" #3`)
	e.expect(e.get("/home", "X-Tenant", "acme"), 200, "HIT", `tenant "acme" #1`)
}

func (s *suite) optCacheStatus(t *testing.T) {
	var calls counter
	handler := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		if r.URL.Query().Get("cookie") == "1" {
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "x"})
		}
		text(w, fmt.Sprintf("#%d", calls.inc()))
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/p", Cache: Cached("r"), Handler: handler},
	}})
	r := e.get("/p")
	if cs := r.Header.Get("Cache-Status"); cs != "routecache; fwd=uri-miss; stored" {
		t.Fatalf("storable miss: Cache-Status %q, want \"routecache; fwd=uri-miss; stored\"", cs)
	}
	r = e.get("/p?cookie=1")
	if cs := r.Header.Get("Cache-Status"); cs != "routecache; fwd=uri-miss; detail=set-cookie" {
		t.Fatalf("miss setting a cookie: Cache-Status %q, want detail=set-cookie", cs)
	}
	r = e.get("/p")
	if cs := r.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "routecache; hit; ttl=") {
		t.Fatalf("hit: Cache-Status %q, want \"routecache; hit; ttl=N\"", cs)
	}
}

func (s *suite) optCDNHeaders(t *testing.T) {
	var calls counter
	handler := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		if r.URL.Query().Get("own") == "1" {
			w.Header().Set("Surrogate-Key", "mine")
		}
		text(w, fmt.Sprintf("a %s #%d", p("id"), calls.inc()))
	}
	e := s.setup(t, map[string]core.RegionConfig{
		"cdn":   {TTL: 5 * time.Minute, StaleIfError: time.Hour, CDNHeaders: true},
		"plain": {},
	}, App{Routes: []Route{
		{Method: "GET", Path: "/a/:id", Cache: Cached("cdn", core.Tags("article:{id}", "articles")), Handler: handler},
		{Method: "GET", Path: "/short/:id", Cache: Cached("cdn", core.Tags("articles"), core.TTL(30*time.Second)), Handler: handler},
		{Method: "GET", Path: "/plain/:id", Cache: Cached("plain", core.Tags("articles")), Handler: handler},
		{Method: "GET", Path: "/rt/:id", Cache: Cached("cdn", core.Tags("articles")), Handler: func(w http.ResponseWriter, r *http.Request, p func(string) string) {
			core.AddTags(r.Context(), "item:"+p("id"), "item:6", "articles")
			text(w, "list #"+fmt.Sprint(calls.inc()))
		}},
	}})
	check := func(r resp, keys, cc string) {
		t.Helper()
		if got := r.Header.Get("Surrogate-Key"); got != keys {
			t.Fatalf("%v: Surrogate-Key %q, want %q", r, got, keys)
		}
		if got := r.Header.Get("CDN-Cache-Control"); got != cc {
			t.Fatalf("%v: CDN-Cache-Control %q, want %q", r, got, cc)
		}
	}
	// The leader's response and every hit carry them.
	miss := e.get("/a/7")
	e.expect(miss, 200, "MISS", "a 7 #1")
	check(miss, "article:7 articles", "max-age=300, stale-if-error=3600")
	hit := e.get("/a/7")
	e.expect(hit, 200, "HIT", "a 7 #1")
	check(hit, "article:7 articles", "max-age=300, stale-if-error=3600")
	// The route's own lifetime is the one announced.
	e.get("/short/1")
	check(e.get("/short/1"), "articles", "max-age=30, stale-if-error=3600")
	// The handler's own Surrogate-Key is kept.
	own := e.get("/a/8?own=1")
	check(own, "mine", "max-age=300, stale-if-error=3600")
	check(e.get("/a/8?own=1"), "mine", "max-age=300, stale-if-error=3600")
	// Runtime tags (AddTags) are listed after the declared ones.
	e.get("/rt/5")
	check(e.get("/rt/5"), "articles item:5 item:6", "max-age=300, stale-if-error=3600")
	// Off by default.
	e.get("/plain/1")
	check(e.get("/plain/1"), "", "")
}
