// Package cachetest is routecache's conformance suite: one set of scenarios
// that every front (Gin, Echo, net/http) and every backend must pass.
//
// A front describes how to turn a list of framework-neutral routes into an
// http.Handler using that framework and its routecache adapter; Run then
// drives the same requests through it and checks the same behaviour:
//
//	func TestConformance(t *testing.T) {
//		cachetest.Run(t, cachetest.Front{Name: "gin", Build: buildGin}, cachetest.Memory)
//	}
//
// newCache builds the Cache for each scenario from the scenario's regions;
// a backend's tests pass one that fills in RegionConfig.Backend (or Store)
// and leaves every other field alone. Each scenario gets its own Cache and
// its own key prefix, so scenarios can share one Redis or Memcached.
//
// The package imports only core, the standard library and testing: it
// knows nothing of Gin or Echo.
package cachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/internal/testhook"
)

// Handler is a framework-neutral route handler. param returns a route
// parameter by name (the name after ':' in Route.Path). Fronts call it with
// the writer and request their framework hands to its handlers (Gin's
// c.Writer, Echo's c.Response()), so what a handler does to w, such as
// flushing, goes through the adapter exactly as in an application.
type Handler func(w http.ResponseWriter, r *http.Request, param func(name string) string)

// CacheSpec decorates a route with the cache: the route's region and the
// options given to ginadapter.Cache, echoadapter.Cache or Cache.Middleware.
type CacheSpec struct {
	Region  string
	Options []core.RouteOption
}

// Cached is shorthand for a *CacheSpec.
func Cached(region string, opts ...core.RouteOption) *CacheSpec {
	return &CacheSpec{Region: region, Options: opts}
}

// Route is one route of the application under test.
type Route struct {
	// Method is the HTTP method. A GET route also answers HEAD: Gin and Echo
	// fronts register the route for HEAD too, as net/http's "GET /x" does.
	Method string
	// Path uses Gin/Echo syntax: "/articles/:id" for a parameter,
	// "/files/*path" for a catch-all (the rest of the path, possibly with
	// slashes). Each front converts it to its router's syntax.
	Path string
	// Cache, when set, caches the route (the cache runs before Handler).
	Cache *CacheSpec
	// Invalidate, when non-empty, makes the route invalidate these
	// core.Tags / core.Regions / core.Keys after it answers 2xx.
	Invalidate []core.InvalidateOption
	// Handler answers the request.
	Handler Handler
	// Gzip, when not GzipNone, puts the front's usual gzip middleware on
	// the route (gin-contrib/gzip, Echo's middleware.Gzip, a net/http
	// gzip handler): before the cache or between it and Handler.
	Gzip GzipPlacement
}

// App is what a front builds.
type App struct {
	Routes []Route
	// Before, when non-nil, must run as a global middleware of the front,
	// for every request, before routing reaches the cache: for example a
	// request-ID middleware setting a response header.
	Before func(w http.ResponseWriter, r *http.Request)
}

// Front is a web framework with its routecache adapter.
type Front struct {
	// Name identifies the front in failure messages.
	Name string
	// Build returns the handler serving app with rc. It must install the
	// framework's usual panic recovery, answering 500 to a panicking
	// handler (net/http has none: the front provides a small one), and
	// call t.Fatal on construction errors.
	Build func(t testing.TB, rc *core.Cache, app App) http.Handler
}

// NewCache builds the Cache of one scenario from its regions. It must
// t.Cleanup the Cache's Close. Implementations set the regions' Backend
// (or Store) and keep every other field as given, Prefix included.
type NewCache func(t testing.TB, regions map[string]core.RegionConfig) *core.Cache

// Memory is a NewCache on the embedded memory backend (the regions'
// Backend left as given: "" is memory://).
func Memory(t testing.TB, regions map[string]core.RegionConfig) *core.Cache {
	t.Helper()
	return open(t, regions)
}

func open(t testing.TB, regions map[string]core.RegionConfig) *core.Cache {
	t.Helper()
	rc, err := core.New(core.Config{Regions: regions})
	if err != nil {
		t.Fatalf("core.New: %v", err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// WithBackend returns a NewCache that sets every region's Backend to backend,
// for backends chosen by URL (redis://, memcache://...).
func WithBackend(backend string) NewCache {
	return func(t testing.TB, regions map[string]core.RegionConfig) *core.Cache {
		t.Helper()
		out := make(map[string]core.RegionConfig, len(regions))
		for name, rc := range regions {
			rc.Backend = backend
			out[name] = rc
		}
		return open(t, out)
	}
}

type suite struct {
	front    Front
	newCache NewCache
}

// Run runs every scenario against front, building each scenario's Cache
// with newCache (nil means Memory).
func Run(t *testing.T, front Front, newCache NewCache) {
	testhook.Enable() // before any request: waitForWaiters counts waits from here on
	if front.Build == nil {
		t.Fatal("cachetest: Front.Build is nil")
	}
	if newCache == nil {
		newCache = Memory
	}
	s := &suite{front: front, newCache: newCache}
	t.Run("MissThenHit", s.missThenHit)
	t.Run("Conditional", s.conditional)
	t.Run("Head", s.head)
	t.Run("KeyCanonicalisation", s.keys)
	t.Run("Invalidation", s.invalidation)
	t.Run("Safety", s.safety)
	t.Run("OuterMiddlewareHeaders", s.outerHeaders)
	t.Run("Coalescing", s.coalescing)
	t.Run("Expiry", s.expiry)
	t.Run("Stats", s.stats)
	t.Run("Options", s.options)
	t.Run("Compression", s.compression)
	t.Run("RuntimeTags", s.runtimeTags)
}

// ---------------------------------------------------------------------------
// Harness

// env is one scenario's application: a fresh Cache and the front's handler.
type env struct {
	t  *testing.T
	rc *core.Cache
	h  http.Handler
}

func (s *suite) setup(t *testing.T, regions map[string]core.RegionConfig, app App) *env {
	t.Helper()
	prefix := uniquePrefix()
	scoped := make(map[string]core.RegionConfig, len(regions))
	for name, rc := range regions {
		if rc.Prefix == "" {
			rc.Prefix = prefix
		}
		scoped[name] = rc
	}
	rc := s.newCache(t, scoped)
	if rc == nil {
		t.Fatal("cachetest: newCache returned nil")
	}
	h := s.front.Build(t, rc, app)
	if h == nil {
		t.Fatalf("cachetest: %s: Build returned nil", s.front.Name)
	}
	return &env{t: t, rc: rc, h: h}
}

func uniquePrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "ct-" + hex.EncodeToString(b[:])
}

// resp is a finished response.
type resp struct {
	Status int
	Header http.Header
	Body   string
}

func (r resp) cache() string { return r.Header.Get("X-Cache") }

func (r resp) String() string {
	return fmt.Sprintf("%d X-Cache=%q Cache-Status=%q body=%q", r.Status, r.cache(), r.Header.Get("Cache-Status"), trunc(r.Body))
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// do serves one request through an httptest.ResponseRecorder. hdr holds
// header name/value pairs, added in order (so a name may repeat).
func (e *env) do(method, target string, hdr ...string) resp {
	e.t.Helper()
	return e.doBody(method, target, nil, hdr...)
}

func (e *env) get(target string, hdr ...string) resp {
	e.t.Helper()
	return e.do(http.MethodGet, target, hdr...)
}

func (e *env) doBody(method, target string, body io.Reader, hdr ...string) resp {
	e.t.Helper()
	if len(hdr)%2 != 0 {
		e.t.Fatalf("cachetest: odd header list %q", hdr)
	}
	req := httptest.NewRequest(method, target, body)
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: string(b)}
}

// expect checks status, X-Cache and (when body != "*") the body.
func (e *env) expect(r resp, status int, xcache, body string) {
	e.t.Helper()
	if r.Status != status || r.cache() != xcache || (body != "*" && r.Body != body) {
		want := resp{Status: status, Header: http.Header{"X-Cache": {xcache}}, Body: body}
		e.t.Fatalf("got  %v\nwant %d X-Cache=%q body=%q", r, want.Status, xcache, trunc(body))
	}
}

func (e *env) stats(region string) core.Stats {
	e.t.Helper()
	st, ok := e.rc.Stats()[region]
	if !ok {
		e.t.Fatalf("no stats for region %q", region)
	}
	return st
}

// counter counts origin calls.
type counter struct{ n atomic.Int64 }

func (c *counter) inc() int64 { return c.n.Add(1) }

func (c *counter) load() int64 { return c.n.Load() }

func expectCalls(t *testing.T, c *counter, want int64) {
	t.Helper()
	if got := c.load(); got != want {
		t.Fatalf("origin calls = %d, want %d", got, want)
	}
}

func bg() context.Context { return context.Background() }

// text writes a 200 text/plain body.
func text(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
}

// articles is a tiny data set behind "/articles/:id".
type articles struct {
	calls counter
	mu    sync.Mutex
	rev   map[string]int
}

func newArticles() *articles { return &articles{rev: map[string]int{}} }

func (a *articles) body(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("article %s rev %d", id, a.rev[id])
}

func (a *articles) show(w http.ResponseWriter, r *http.Request, p func(string) string) {
	a.calls.inc()
	h := w.Header()
	h.Add("X-Multi", "one")
	h.Add("X-Multi", "two")
	text(w, a.body(p("id")))
}

// update bumps the article's revision and answers ?status (default 200):
// a handler that changed data and then failed must still not invalidate.
func (a *articles) update(w http.ResponseWriter, r *http.Request, p func(string) string) {
	a.mu.Lock()
	a.rev[p("id")]++
	a.mu.Unlock()
	code := http.StatusOK
	if s := r.URL.Query().Get("status"); s != "" {
		code, _ = strconv.Atoi(s)
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, http.StatusText(code))
}

// ---------------------------------------------------------------------------
// 1. MISS then HIT

func (s *suite) missThenHit(t *testing.T) {
	a := newArticles()
	var tagged counter
	e := s.setup(t, map[string]core.RegionConfig{"articles": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/articles/:id", Cache: Cached("articles", core.Tags("article:{id}")), Handler: a.show},
		{Method: "GET", Path: "/tagged", Cache: Cached("articles"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			tagged.inc()
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
			text(w, "tagged")
		}},
	}})
	want := a.body("1")

	miss := e.get("/articles/1")
	e.expect(miss, 200, "MISS", want)
	if got := miss.Header.Values("X-Multi"); !equal(got, []string{"one", "two"}) {
		t.Fatalf("MISS X-Multi = %q, want [one two]", got)
	}
	expectCalls(t, &a.calls, 1)

	hit := e.get("/articles/1")
	e.expect(hit, 200, "HIT", want)
	expectCalls(t, &a.calls, 1)
	h := hit.Header
	if et := h.Get("ETag"); !strings.HasPrefix(et, `"`) || !strings.HasSuffix(et, `"`) || len(et) < 3 {
		t.Fatalf("HIT ETag = %q, want a strong quoted validator", et)
	}
	if ages := h.Values("Age"); len(ages) != 1 {
		t.Fatalf("HIT Age = %q, want one value", ages)
	} else if n, err := strconv.Atoi(ages[0]); err != nil || n < 0 {
		t.Fatalf("HIT Age = %q, want a non-negative integer", ages[0])
	}
	if cs := h.Get("Cache-Status"); !strings.HasPrefix(cs, "routecache; hit") {
		t.Fatalf("HIT Cache-Status = %q, want routecache; hit; ...", cs)
	}
	if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
		t.Fatalf("HIT Content-Length = %q, want %d", cl, len(want))
	}
	if got := h.Values("X-Multi"); !equal(got, []string{"one", "two"}) {
		t.Fatalf("HIT X-Multi = %q, want [one two] (all values, in order)", got)
	}
	if ct := h.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("HIT Content-Type = %q", ct)
	}
	if h.Get("Last-Modified") == "" {
		t.Fatal("HIT has no Last-Modified")
	}
	if e.get("/articles/1").cache() != "HIT" {
		t.Fatal("third request is not a HIT")
	}
	expectCalls(t, &a.calls, 1)

	// A validator the handler set is kept as is.
	e.expect(e.get("/tagged"), 200, "MISS", "tagged")
	hit = e.get("/tagged")
	e.expect(hit, 200, "HIT", "tagged")
	if et := hit.Header.Get("ETag"); et != `"v1"` {
		t.Fatalf("handler ETag replayed as %q, want \"v1\"", et)
	}
	if lm := hit.Header.Get("Last-Modified"); lm != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Fatalf("handler Last-Modified replayed as %q", lm)
	}
	expectCalls(t, &tagged, 1)

	st := e.stats("articles")
	if st.Misses != 2 || st.Hits != 3 || st.Stores != 2 {
		t.Fatalf("stats = %+v, want 2 misses, 3 hits, 2 stores", st)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// 2. Conditional requests

func (s *suite) conditional(t *testing.T) {
	a := newArticles()
	e := s.setup(t, map[string]core.RegionConfig{"articles": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/articles/:id", Cache: Cached("articles"), Handler: a.show},
	}})
	want := a.body("7")
	e.expect(e.get("/articles/7"), 200, "MISS", want)
	hit := e.get("/articles/7")
	e.expect(hit, 200, "HIT", want)
	etag := hit.Header.Get("ETag")
	lm, err := http.ParseTime(hit.Header.Get("Last-Modified"))
	if etag == "" || err != nil {
		t.Fatalf("HIT lacks validators: ETag %q, Last-Modified %q", etag, hit.Header.Get("Last-Modified"))
	}

	for _, inm := range []string{etag, `"nope", ` + etag, "W/" + etag, "*"} {
		r := e.get("/articles/7", "If-None-Match", inm)
		e.expect(r, http.StatusNotModified, "HIT", "")
		if got := r.Header.Get("ETag"); got != etag {
			t.Fatalf("304 ETag = %q, want %q", got, etag)
		}
	}
	e.expect(e.get("/articles/7", "If-None-Match", `"other"`), 200, "HIT", want)

	after := lm.Add(time.Hour).UTC().Format(http.TimeFormat)
	e.expect(e.get("/articles/7", "If-Modified-Since", after), http.StatusNotModified, "HIT", "")
	same := lm.UTC().Format(http.TimeFormat)
	e.expect(e.get("/articles/7", "If-Modified-Since", same), http.StatusNotModified, "HIT", "")
	before := lm.Add(-time.Hour).UTC().Format(http.TimeFormat)
	e.expect(e.get("/articles/7", "If-Modified-Since", before), 200, "HIT", want)
	// If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
	e.expect(e.get("/articles/7", "If-None-Match", `"other"`, "If-Modified-Since", after), 200, "HIT", want)
	expectCalls(t, &a.calls, 1)
}

// ---------------------------------------------------------------------------
// 3. HEAD shares GET's entry

func (s *suite) head(t *testing.T) {
	a := newArticles()
	e := s.setup(t, map[string]core.RegionConfig{"articles": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/articles/:id", Cache: Cached("articles"), Handler: a.show},
	}})
	want := a.body("3")

	// HEAD on a cold key runs the handler and stores nothing.
	cold := e.do(http.MethodHead, "/articles/3")
	if cold.Status != 200 || cold.cache() == "HIT" {
		t.Fatalf("cold HEAD: %v", cold)
	}
	expectCalls(t, &a.calls, 1)
	e.expect(e.get("/articles/3"), 200, "MISS", want)
	expectCalls(t, &a.calls, 2)

	// After the GET fill, HEAD is a HIT without a body.
	hd := e.do(http.MethodHead, "/articles/3")
	e.expect(hd, 200, "HIT", "")
	if cl := hd.Header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
		t.Fatalf("HEAD HIT Content-Length = %q, want %d", cl, len(want))
	}
	if hd.Header.Get("ETag") == "" {
		t.Fatal("HEAD HIT has no ETag")
	}
	e.expect(e.get("/articles/3"), 200, "HIT", want)
	expectCalls(t, &a.calls, 2)
}

// ---------------------------------------------------------------------------
// 4. Query and path canonicalisation

func (s *suite) keys(t *testing.T) {
	var calls counter
	echo := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		n := calls.inc()
		text(w, fmt.Sprintf("#%d %s?%s", n, r.URL.EscapedPath(), r.URL.RawQuery))
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/search", Cache: Cached("r"), Handler: echo},
		{Method: "GET", Path: "/files/*path", Cache: Cached("r"), Handler: echo},
	}})

	// The handler reads the raw query (as Echo's QueryString does): a
	// reordered query is another request to it.
	first := e.get("/search?b=2&a=1")
	e.expect(first, 200, "MISS", "#1 /search?b=2&a=1")
	e.expect(e.get("/search?a=1&b=2"), 200, "MISS", "#2 /search?a=1&b=2")
	e.expect(e.get("/search?b=2&a=1"), 200, "HIT", first.Body)
	expectCalls(t, &calls, 2)

	// An encoded '&' and '=' are data, not separators.
	enc := e.get("/search?a=1%26b%3D2")
	e.expect(enc, 200, "MISS", "#3 /search?a=1%26b%3D2")
	e.expect(e.get("/search?a=1%26b%3D2"), 200, "HIT", enc.Body)

	// The order of a repeated parameter's values is observable: not shared.
	e.expect(e.get("/search?a=1&a=2"), 200, "MISS", "#4 /search?a=1&a=2")
	e.expect(e.get("/search?a=2&a=1"), 200, "MISS", "#5 /search?a=2&a=1")
	// No query differs from an empty one only in spelling.
	e.expect(e.get("/search"), 200, "MISS", "#6 /search?")
	expectCalls(t, &calls, 6)

	// An encoded slash is not a path separator.
	slash := e.get("/files/a/b")
	e.expect(slash, 200, "MISS", "#7 /files/a/b?")
	enc = e.get("/files/a%2Fb")
	e.expect(enc, 200, "MISS", "#8 /files/a%2Fb?")
	e.expect(e.get("/files/a/b"), 200, "HIT", slash.Body)
	e.expect(e.get("/files/a%2Fb"), 200, "HIT", enc.Body)
	expectCalls(t, &calls, 8)

	// With CanonicalQuery, a handler reading parsed values shares one
	// entry between spellings of the same values.
	var parsed counter
	values := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		text(w, fmt.Sprintf("#%d %s", parsed.inc(), r.URL.Query().Encode()))
	}
	c := s.setup(t, map[string]core.RegionConfig{"r": {CanonicalQuery: true}}, App{Routes: []Route{
		{Method: "GET", Path: "/search", Cache: Cached("r"), Handler: values},
	}})
	one := c.get("/search?b=2&a=1")
	c.expect(one, 200, "MISS", "#1 a=1&b=2")
	c.expect(c.get("/search?a=1&b=2"), 200, "HIT", one.Body)
	c.expect(c.get("/search?a=%31&b=2"), 200, "HIT", one.Body)
	c.expect(c.get("/search?a=1&a=2"), 200, "MISS", "#2 a=1&a=2")
	expectCalls(t, &parsed, 2)
}

// ---------------------------------------------------------------------------
// 5. Invalidation

func (s *suite) invalidation(t *testing.T) {
	a := newArticles()
	var pages counter
	page := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := pages.inc()
		text(w, fmt.Sprintf("page %s #%d", p("id"), n))
	}
	ok := func(w http.ResponseWriter, r *http.Request, _ func(string) string) { text(w, "done") }
	e := s.setup(t, map[string]core.RegionConfig{"articles": {}, "pages": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/articles/:id", Cache: Cached("articles", core.Tags("article:{id}", "articles")), Handler: a.show},
		{Method: "PUT", Path: "/articles/:id", Invalidate: []core.InvalidateOption{core.Tags("article:{id}")}, Handler: a.update},
		{Method: "GET", Path: "/pages/:id", Cache: Cached("pages", core.Key("page:{id}")), Handler: page},
		{Method: "POST", Path: "/pages/:id/touch", Invalidate: []core.InvalidateOption{core.Keys("pages", "page:{id}")}, Handler: ok},
		{Method: "POST", Path: "/flush", Invalidate: []core.InvalidateOption{core.Regions("pages")}, Handler: ok},
	}})
	// The steps below build on each other; each runs as a subtest with e
	// reporting to it, and a failed step ends the scenario.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) { e.t = t; f(t) }) {
			t.FailNow()
		}
	}
	fill := func(ids ...string) {
		e.t.Helper()
		for _, id := range ids {
			e.expect(e.get("/articles/"+id), 200, "MISS", a.body(id))
			e.expect(e.get("/articles/"+id), 200, "HIT", a.body(id))
		}
	}
	hitAll := func(ids ...string) {
		e.t.Helper()
		for _, id := range ids {
			if r := e.get("/articles/" + id); r.cache() != "HIT" {
				e.t.Fatalf("GET /articles/%s: %v, want a HIT", id, r)
			}
		}
	}
	missAll := func(ids ...string) {
		e.t.Helper()
		for _, id := range ids {
			e.expect(e.get("/articles/"+id), 200, "MISS", a.body(id))
		}
	}
	fill("1", "2")

	step("Declarative", func(t *testing.T) {
		e.expect(e.do(http.MethodPut, "/articles/1"), 200, "", "OK")
		e.expect(e.get("/articles/1"), 200, "MISS", "article 1 rev 1")
		e.expect(e.get("/articles/1"), 200, "HIT", "article 1 rev 1")
		e.expect(e.get("/articles/2"), 200, "HIT", "article 2 rev 0")
	})
	step("FailedMutationKeepsEntries", func(t *testing.T) {
		for _, code := range []string{"400", "409", "500", "503"} {
			r := e.do(http.MethodPut, "/articles/1?status="+code)
			if strconv.Itoa(r.Status) != code {
				t.Fatalf("PUT ?status=%s answered %v", code, r)
			}
			// The data changed, but the answer said it failed: the entry stays.
			e.expect(e.get("/articles/1"), 200, "HIT", "article 1 rev 1")
		}
		e.expect(e.do(http.MethodPut, "/articles/1"), 200, "", "OK")
		e.expect(e.get("/articles/1"), 200, "MISS", "article 1 rev 6")
		hitAll("2")
	})
	step("InvalidateTags", func(t *testing.T) {
		fill("3")
		if err := e.rc.InvalidateTags(bg(), "article:2"); err != nil {
			t.Fatal(err)
		}
		missAll("2")
		hitAll("1", "3", "2")
		if err := e.rc.InvalidateTags(bg(), "articles"); err != nil {
			t.Fatal(err)
		}
		missAll("1", "2", "3")
		hitAll("1", "2", "3")
	})
	step("InvalidateRegion", func(t *testing.T) {
		e.expect(e.get("/pages/1"), 200, "MISS", "page 1 #1")
		e.expect(e.get("/pages/1"), 200, "HIT", "page 1 #1")
		if err := e.rc.InvalidateRegion(bg(), "articles"); err != nil {
			t.Fatal(err)
		}
		missAll("1", "2", "3")
		hitAll("1", "2", "3")
		e.expect(e.get("/pages/1"), 200, "HIT", "page 1 #1") // other regions keep theirs
		if err := e.rc.InvalidateRegion(bg(), "nope"); err == nil {
			t.Fatal("InvalidateRegion of an unknown region: no error")
		}
	})
	step("InvalidateKeyDefaultKey", func(t *testing.T) {
		e.expect(e.get("/articles/1?view=full"), 200, "MISS", a.body("1"))
		e.expect(e.get("/articles/1?view=full"), 200, "HIT", a.body("1"))
		if err := e.rc.InvalidateKey(bg(), "articles", "/articles/1"); err != nil {
			t.Fatal(err)
		}
		missAll("1")
		e.expect(e.get("/articles/1?view=full"), 200, "MISS", a.body("1")) // every query variant goes
		hitAll("2", "3")
	})
	step("InvalidateKeyTemplate", func(t *testing.T) {
		e.expect(e.get("/pages/2"), 200, "MISS", "page 2 #2")
		if err := e.rc.InvalidateKey(bg(), "pages", "page:1"); err != nil {
			t.Fatal(err)
		}
		e.expect(e.get("/pages/1"), 200, "MISS", "page 1 #3")
		e.expect(e.get("/pages/1"), 200, "HIT", "page 1 #3")
		e.expect(e.get("/pages/2"), 200, "HIT", "page 2 #2")
	})
	step("DeclarativeKeysAndRegions", func(t *testing.T) {
		e.expect(e.do(http.MethodPost, "/pages/2/touch"), 200, "", "done")
		e.expect(e.get("/pages/2"), 200, "MISS", "page 2 #4")
		e.expect(e.get("/pages/1"), 200, "HIT", "page 1 #3")
		e.expect(e.do(http.MethodPost, "/flush"), 200, "", "done")
		e.expect(e.get("/pages/1"), 200, "MISS", "page 1 #5")
		e.expect(e.get("/pages/2"), 200, "MISS", "page 2 #6")
		hitAll("1", "2", "3")
	})
}

// ---------------------------------------------------------------------------
// 6. Safety defaults

func (s *suite) safety(t *testing.T) {
	t.Run("Authorization", s.safetyAuthorization)
	t.Run("VaryAuthorization", s.safetyVaryAuthorization)
	t.Run("Cookie", s.safetyCookie)
	t.Run("VaryAndIgnoreCookies", s.safetyVaryCookies)
	t.Run("SetCookie", s.safetySetCookie)
	t.Run("CacheControl", s.safetyCacheControl)
	t.Run("Vary", s.safetyVary)
	t.Run("Statuses", s.safetyStatuses)
	t.Run("Post", s.safetyPost)
	t.Run("MaxEntryBytes", s.safetyTooLarge)
	t.Run("Flush", s.safetyFlush)
	t.Run("RequestBody", s.safetyRequestBody)
	t.Run("MethodOverride", s.safetyOverride)
	t.Run("ForwardedHost", s.safetyForwardedHost)
}

// whoami answers with the caller's identity as the request shows it.
func whoami(calls *counter) Handler {
	return func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		calls.inc()
		switch {
		case r.Header.Get("Authorization") != "":
			text(w, "user "+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		case r.Header.Get("Cookie") != "":
			text(w, "cookie "+r.Header.Get("Cookie"))
		default:
			text(w, "anonymous")
		}
	}
}

func (s *suite) safetyAuthorization(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/me", Cache: Cached("r"), Handler: whoami(&calls)},
	}})
	e.expect(e.get("/me"), 200, "MISS", "anonymous")
	e.expect(e.get("/me"), 200, "HIT", "anonymous")
	for i := 0; i < 2; i++ {
		e.expect(e.get("/me", "Authorization", "Bearer alice"), 200, "BYPASS", "user alice")
		e.expect(e.get("/me", "Authorization", "Bearer bob"), 200, "BYPASS", "user bob")
	}
	e.expect(e.get("/me"), 200, "HIT", "anonymous")
	expectCalls(t, &calls, 5)
	if r := e.get("/me", "Authorization", "Bearer carol"); !strings.Contains(r.Header.Get("Cache-Status"), "authorization") {
		t.Fatalf("bypass Cache-Status = %q, want the reason", r.Header.Get("Cache-Status"))
	}
	if st := e.stats("r"); st.Bypasses[core.BypassAuthorization] != 5 {
		t.Fatalf("bypasses = %v, want 5 for authorization", st.Bypasses)
	}
}

func (s *suite) safetyVaryAuthorization(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"p": {VaryAuthorization: true}}, App{Routes: []Route{
		{Method: "GET", Path: "/me", Cache: Cached("p"), Handler: whoami(&calls)},
	}})
	e.expect(e.get("/me"), 200, "MISS", "anonymous")
	e.expect(e.get("/me", "Authorization", "Bearer alice"), 200, "MISS", "user alice")
	e.expect(e.get("/me", "Authorization", "Bearer bob"), 200, "MISS", "user bob")
	e.expect(e.get("/me", "Authorization", "Bearer alice"), 200, "HIT", "user alice")
	e.expect(e.get("/me", "Authorization", "Bearer bob"), 200, "HIT", "user bob")
	e.expect(e.get("/me"), 200, "HIT", "anonymous")
	expectCalls(t, &calls, 3)
}

func (s *suite) safetyCookie(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/me", Cache: Cached("r"), Handler: whoami(&calls)},
	}})
	e.expect(e.get("/me"), 200, "MISS", "anonymous")
	for i := 0; i < 2; i++ {
		e.expect(e.get("/me", "Cookie", "sid=alice"), 200, "BYPASS", "cookie sid=alice")
		e.expect(e.get("/me", "Cookie", "sid=bob"), 200, "BYPASS", "cookie sid=bob")
	}
	e.expect(e.get("/me"), 200, "HIT", "anonymous")
	expectCalls(t, &calls, 5)
	if st := e.stats("r"); st.Bypasses[core.BypassCookie] != 4 {
		t.Fatalf("bypasses = %v, want 4 for cookie", st.Bypasses)
	}
}

func (s *suite) safetyVaryCookies(t *testing.T) {
	var calls counter
	lang := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		calls.inc()
		v := "none"
		if c, err := r.Cookie("lang"); err == nil {
			v = c.Value
		}
		text(w, "lang "+v)
	}
	e := s.setup(t, map[string]core.RegionConfig{"ck": {VaryCookies: []string{"lang"}, IgnoreCookies: []string{"_ga"}}}, App{Routes: []Route{
		{Method: "GET", Path: "/page", Cache: Cached("ck"), Handler: lang},
	}})
	e.expect(e.get("/page"), 200, "MISS", "lang none")
	e.expect(e.get("/page", "Cookie", "_ga=GA1.1"), 200, "HIT", "lang none") // ignored cookie
	e.expect(e.get("/page", "Cookie", "lang=en"), 200, "MISS", "lang en")
	e.expect(e.get("/page", "Cookie", "lang=fr"), 200, "MISS", "lang fr")
	e.expect(e.get("/page", "Cookie", "lang="), 200, "MISS", "lang ") // empty is not absent
	e.expect(e.get("/page", "Cookie", "lang=en"), 200, "HIT", "lang en")
	e.expect(e.get("/page", "Cookie", "lang=fr; _ga=GA1.2"), 200, "HIT", "lang fr")
	e.expect(e.get("/page", "Cookie", "lang=en; sid=secret"), 200, "BYPASS", "lang en")
	e.expect(e.get("/page"), 200, "HIT", "lang none")
	expectCalls(t, &calls, 5)
}

func (s *suite) safetySetCookie(t *testing.T) {
	var always, first counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/always", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			n := always.inc()
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s" + strconv.FormatInt(n, 10)})
			text(w, fmt.Sprintf("always #%d", n))
		}},
		{Method: "GET", Path: "/first", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			n := first.inc()
			if n == 1 {
				http.SetCookie(w, &http.Cookie{Name: "sid", Value: "first"})
			}
			text(w, fmt.Sprintf("first #%d", n))
		}},
	}})
	for i := 1; i <= 3; i++ {
		r := e.get("/always")
		e.expect(r, 200, "MISS", fmt.Sprintf("always #%d", i))
		if got := r.Header.Get("Set-Cookie"); got != fmt.Sprintf("sid=s%d", i) {
			t.Fatalf("Set-Cookie = %q", got)
		}
	}
	r := e.get("/first")
	e.expect(r, 200, "MISS", "first #1")
	if r.Header.Get("Set-Cookie") == "" {
		t.Fatal("the first answer lost its Set-Cookie")
	}
	e.expect(e.get("/first"), 200, "MISS", "first #2")
	r = e.get("/first")
	e.expect(r, 200, "HIT", "first #2")
	if v := r.Header.Values("Set-Cookie"); len(v) != 0 {
		t.Fatalf("HIT replayed Set-Cookie %q", v)
	}
	if st := e.stats("r"); st.NotStored[core.NotStoredSetCookie] != 4 || st.Stores != 1 {
		t.Fatalf("stats = %+v, want 4 not stored for set-cookie, 1 store", st)
	}
}

func (s *suite) safetyCacheControl(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/cc", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			n := calls.inc()
			w.Header().Set("Cache-Control", r.URL.Query().Get("v"))
			text(w, fmt.Sprintf("#%d", n))
		}},
	}})
	notStored := []string{"private", "no-store", "no-cache", "public, max-age=60, private", "max-age=0, No-Store", `no-cache="Set-Cookie"`, "private=\"X-User\""}
	for _, v := range notStored {
		target := "/cc?v=" + url.QueryEscape(v)
		a, b := e.get(target), e.get(target)
		if a.cache() != "MISS" || b.cache() != "MISS" || a.Body == b.Body {
			t.Fatalf("Cache-Control %q was stored: %v then %v", v, a, b)
		}
	}
	// Other directives do not stop storing.
	target := "/cc?v=" + url.QueryEscape("public, max-age=60")
	a := e.get(target)
	e.expect(a, 200, "MISS", "*")
	e.expect(e.get(target), 200, "HIT", a.Body)
	if st := e.stats("r"); st.NotStored[core.NotStoredCacheControl] != uint64(2*len(notStored)) {
		t.Fatalf("not stored = %v, want %d for cache-control", st.NotStored, 2*len(notStored))
	}
}

func (s *suite) safetyVary(t *testing.T) {
	var calls counter
	vary := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		n := calls.inc()
		w.Header().Set("Vary", r.URL.Query().Get("vary"))
		text(w, fmt.Sprintf("#%d lang=%s", n, r.Header.Get("Accept-Language")))
	}
	e := s.setup(t, map[string]core.RegionConfig{
		"plain": {},
		"lang":  {VaryHeaders: []string{"accept-language"}},
	}, App{Routes: []Route{
		{Method: "GET", Path: "/plain", Cache: Cached("plain"), Handler: vary},
		{Method: "GET", Path: "/lang", Cache: Cached("lang"), Handler: vary},
	}})
	for _, target := range []string{"/plain?vary=*", "/plain?vary=Accept-Language", "/lang?vary=*"} {
		a, b := e.get(target, "Accept-Language", "en"), e.get(target, "Accept-Language", "en")
		if a.cache() != "MISS" || b.cache() != "MISS" || a.Body == b.Body {
			t.Fatalf("%s was stored: %v then %v", target, a, b)
		}
	}
	// Accept-Encoding is keyed normalised, once a response varies on it
	// (see compress.go): an identity response is stored.
	for _, target := range []string{"/plain?vary=Accept-Encoding", "/lang?vary=Accept-Language,%20Accept-Encoding"} {
		a, b := e.get(target, "Accept-Language", "en"), e.get(target, "Accept-Language", "en")
		if a.cache() != "MISS" || b.cache() != "HIT" || a.Body != b.Body {
			t.Fatalf("%s was not stored: %v then %v", target, a, b)
		}
	}
	// Vary on a header the region keys on: one entry per value.
	const target = "/lang?vary=Accept-Language"
	en := e.get(target, "Accept-Language", "en")
	fr := e.get(target, "Accept-Language", "fr")
	none := e.get(target)
	e.expect(en, 200, "MISS", "*")
	e.expect(fr, 200, "MISS", "*")
	e.expect(none, 200, "MISS", "*")
	if !strings.HasSuffix(en.Body, "lang=en") || !strings.HasSuffix(fr.Body, "lang=fr") {
		t.Fatalf("bodies %q, %q", en.Body, fr.Body)
	}
	e.expect(e.get(target, "Accept-Language", "fr"), 200, "HIT", fr.Body)
	e.expect(e.get(target, "Accept-Language", "en"), 200, "HIT", en.Body)
	e.expect(e.get(target), 200, "HIT", none.Body)
	hit := e.get(target, "Accept-Language", "en")
	if v := hit.Header.Get("Vary"); v != "Accept-Language" {
		t.Fatalf("HIT Vary = %q", v)
	}
	nsPlain, nsLang := e.stats("plain").NotStored[core.NotStoredVary], e.stats("lang").NotStored[core.NotStoredVary]
	if nsPlain != 4 || nsLang != 2 {
		t.Fatalf("not stored for vary: plain %d, lang %d; want 4, 2", nsPlain, nsLang)
	}
}

func (s *suite) safetyStatuses(t *testing.T) {
	var calls counter
	status := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := calls.inc()
		code, _ := strconv.Atoi(p("code"))
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		fmt.Fprintf(w, "%d #%d", code, n)
	}
	e := s.setup(t, map[string]core.RegionConfig{
		"default": {},
		"errors":  {Statuses: []int{200, 404, 500}},
	}, App{Routes: []Route{
		{Method: "GET", Path: "/default/:code", Cache: Cached("default"), Handler: status},
		{Method: "GET", Path: "/errors/:code", Cache: Cached("errors"), Handler: status},
	}})
	for _, code := range []int{404, 500, 201, 301, 410, 503} {
		target := fmt.Sprintf("/default/%d", code)
		a, b := e.get(target), e.get(target)
		if a.Status != code || b.Status != code || a.cache() != "MISS" || b.cache() != "MISS" || a.Body == b.Body {
			t.Fatalf("status %d was stored: %v then %v", code, a, b)
		}
	}
	for _, code := range []int{404, 500} {
		target := fmt.Sprintf("/errors/%d", code)
		a := e.get(target)
		e.expect(a, code, "MISS", "*")
		e.expect(e.get(target), code, "HIT", a.Body)
	}
	a, b := e.get("/errors/503"), e.get("/errors/503")
	if a.cache() != "MISS" || b.cache() != "MISS" {
		t.Fatalf("503 not in Statuses was stored: %v then %v", a, b)
	}
	if st := e.stats("default"); st.NotStored[core.NotStoredStatus] != 12 || st.Stores != 0 {
		t.Fatalf("default region stats %+v, want 12 not stored for status", st)
	}
	if st := e.stats("errors"); st.Stores != 2 {
		t.Fatalf("errors region stats %+v, want 2 stores", st)
	}
}

func (s *suite) safetyPost(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "POST", Path: "/p", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			text(w, fmt.Sprintf("#%d", calls.inc()))
		}},
	}})
	e.expect(e.do(http.MethodPost, "/p"), 200, "BYPASS", "#1")
	e.expect(e.do(http.MethodPost, "/p"), 200, "BYPASS", "#2")
	e.expect(e.doBody(http.MethodPost, "/p", strings.NewReader("x=1")), 200, "BYPASS", "#3")
	if st := e.stats("r"); st.Bypasses[core.BypassMethod] != 3 || st.Stores != 0 {
		t.Fatalf("stats %+v, want 3 method bypasses", st)
	}
}

func (s *suite) safetyTooLarge(t *testing.T) {
	var calls counter
	big := func(n int) Handler {
		return func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			calls.inc()
			w.Header().Set("Content-Type", "application/octet-stream")
			chunk := bytes.Repeat([]byte("x"), 256)
			for sent := 0; sent < n; sent += len(chunk) {
				_, _ = w.Write(chunk[:min(len(chunk), n-sent)])
			}
		}
	}
	e := s.setup(t, map[string]core.RegionConfig{"small": {MaxEntryBytes: 1024}}, App{Routes: []Route{
		{Method: "GET", Path: "/big", Cache: Cached("small"), Handler: big(64 << 10)},
		{Method: "GET", Path: "/fits", Cache: Cached("small"), Handler: big(1024)},
	}})
	for i := 0; i < 2; i++ {
		e.expect(e.get("/big"), 200, "MISS", strings.Repeat("x", 64<<10))
	}
	e.expect(e.get("/fits"), 200, "MISS", strings.Repeat("x", 1024))
	e.expect(e.get("/fits"), 200, "HIT", strings.Repeat("x", 1024))
	expectCalls(t, &calls, 3)
	if st := e.stats("small"); st.NotStored[core.NotStoredTooLarge] != 2 || st.Stores != 1 {
		t.Fatalf("stats %+v, want 2 too-large, 1 store", st)
	}
}

func (s *suite) safetyFlush(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/stream", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			n := calls.inc()
			_, _ = fmt.Fprintf(w, "part1 #%d;", n)
			f, ok := w.(http.Flusher)
			if !ok {
				panic(fmt.Sprintf("cachetest: %T is not an http.Flusher", w))
			}
			f.Flush()
			_, _ = io.WriteString(w, "part2")
		}},
	}})
	e.expect(e.get("/stream"), 200, "MISS", "part1 #1;part2")
	e.expect(e.get("/stream"), 200, "MISS", "part1 #2;part2")
	if st := e.stats("r"); st.NotStored[core.NotStoredFlushed] != 2 || st.Stores != 0 {
		t.Fatalf("stats %+v, want 2 not stored for flushed", st)
	}
}

func (s *suite) safetyRequestBody(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/q", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			b, _ := io.ReadAll(r.Body)
			text(w, fmt.Sprintf("#%d body=%s", calls.inc(), b))
		}},
	}})
	e.expect(e.get("/q"), 200, "MISS", "#1 body=")
	e.expect(e.doBody(http.MethodGet, "/q", strings.NewReader(`{"q":"secret"}`)), 200, "BYPASS", `#2 body={"q":"secret"}`)
	e.expect(e.get("/q"), 200, "HIT", "#1 body=")
	if st := e.stats("r"); st.Bypasses[core.BypassBody] != 1 {
		t.Fatalf("bypasses %v, want 1 for body", st.Bypasses)
	}
}

func (s *suite) safetyOverride(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/o", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			text(w, fmt.Sprintf("#%d", calls.inc()))
		}},
	}})
	e.expect(e.get("/o"), 200, "MISS", "#1")
	e.expect(e.get("/o", "X-HTTP-Method-Override", "DELETE"), 200, "BYPASS", "#2")
	e.expect(e.get("/o", "X-Http-Method-Override", "PUT"), 200, "BYPASS", "#3")
	e.expect(e.get("/o", "X-Original-URL", "/admin"), 200, "BYPASS", "#4")
	e.expect(e.get("/o"), 200, "HIT", "#1")
	if st := e.stats("r"); st.Bypasses[core.BypassOverride] != 3 {
		t.Fatalf("bypasses %v, want 3 for override", st.Bypasses)
	}
}

func (s *suite) safetyForwardedHost(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/link", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			calls.inc()
			host := r.Host
			if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
				host = fh
			}
			text(w, "https://"+host+"/next")
		}},
	}})
	e.expect(e.get("/link"), 200, "MISS", "https://example.com/next")
	e.expect(e.get("/link", "X-Forwarded-Host", "a.example"), 200, "MISS", "https://a.example/next")
	e.expect(e.get("/link", "X-Forwarded-Host", "evil.example"), 200, "MISS", "https://evil.example/next")
	e.expect(e.get("/link", "X-Forwarded-Host", "a.example"), 200, "HIT", "https://a.example/next")
	e.expect(e.get("/link"), 200, "HIT", "https://example.com/next")
	e.expect(e.get("/link", "X-Forwarded-Host", "evil.example"), 200, "HIT", "https://evil.example/next")
	expectCalls(t, &calls, 3)
	// The Host itself is part of the key too (virtual hosts, tenants).
	e.expect(e.get("http://tenant.example/link"), 200, "MISS", "https://tenant.example/next")
	e.expect(e.get("http://tenant.example/link"), 200, "HIT", "https://tenant.example/next")
	e.expect(e.get("/link"), 200, "HIT", "https://example.com/next")
	expectCalls(t, &calls, 4)
}

// ---------------------------------------------------------------------------
// 7. Headers from outer middleware

func (s *suite) outerHeaders(t *testing.T) {
	var reqID, calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{
		Before: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", strconv.FormatInt(reqID.inc(), 10))
			w.Header().Set("X-Frame-Options", "DENY")
		},
		Routes: []Route{
			{Method: "GET", Path: "/r", Cache: Cached("r"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
				calls.inc()
				w.Header().Set("X-Handler", "yes")
				w.Header().Set("X-Frame-Options", "SAMEORIGIN") // the handler overrides the outer default
				text(w, "body")
			}},
		},
	})
	check := func(r resp, xcache, id string) {
		t.Helper()
		e.expect(r, 200, xcache, "body")
		if v := r.Header.Values("X-Request-Id"); !equal(v, []string{id}) {
			t.Fatalf("%s: X-Request-Id = %q, want [%s] (this request's own)", xcache, v, id)
		}
		if v := r.Header.Values("X-Handler"); !equal(v, []string{"yes"}) {
			t.Fatalf("%s: X-Handler = %q", xcache, v)
		}
		if v := r.Header.Values("X-Frame-Options"); !equal(v, []string{"SAMEORIGIN"}) {
			t.Fatalf("%s: X-Frame-Options = %q, want the handler's [SAMEORIGIN]", xcache, v)
		}
	}
	check(e.get("/r"), "MISS", "1")
	check(e.get("/r"), "HIT", "2")
	check(e.get("/r"), "HIT", "3")
	expectCalls(t, &calls, 1)
}

// ---------------------------------------------------------------------------
// 8. Coalescing

func (s *suite) coalescing(t *testing.T) {
	t.Run("OneFill", s.coalesceOneFill)
	t.Run("NotStorableLeader", s.coalesceNotStorable)
	t.Run("PanickingLeader", s.coalescePanic)
	t.Run("LeaderClientGoesAway", s.coalesceLeaderGone)
	t.Run("WaiterGivesUp", s.coalesceWaiterGone)
}

// waitForWaiters blocks until exactly n requests wait on an in-process
// fill (counted by the core's test hook, testhook.Flight), failing the
// test after a generous bound: it makes the coalescing scenarios
// deterministic.
func waitForWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := -1
	for time.Now().Before(deadline) {
		if got = testhook.Waiting(testhook.Flight); got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d requests wait on a fill, want %d", got, n)
}

// await receives from ch or fails the test after a generous bound.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

type fetched struct {
	client string
	resp   resp
	err    error
}

// server starts a real server for h. cleanups registered after it run
// before it closes (t.Cleanup is LIFO), so a blocked handler is released
// before Close waits for it.
func server(t *testing.T, h http.Handler) (*httptest.Server, *http.Client) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return srv, &http.Client{Transport: tr}
}

func fetch(ctx context.Context, c *http.Client, target, client string) fetched {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fetched{client: client, err: err}
	}
	req.Header.Set("X-Client", client)
	res, err := c.Do(req)
	if err != nil {
		return fetched{client: client, err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return fetched{client: client, resp: resp{Status: res.StatusCode, Header: res.Header, Body: string(b)}, err: err}
}

func expectFetch(t *testing.T, f fetched, status int, xcache, body string) {
	t.Helper()
	if f.err != nil {
		t.Fatalf("client %s: %v", f.client, f.err)
	}
	if f.resp.Status != status || f.resp.cache() != xcache || f.resp.Body != body {
		t.Fatalf("client %s got %v\nwant %d X-Cache=%q body=%q", f.client, f.resp, status, xcache, trunc(body))
	}
}

// releaser closes a channel once; register its release as a cleanup after
// starting the server, so a failing test does not leave handlers blocked.
type releaser struct {
	ch   chan struct{}
	once sync.Once
}

func newReleaser() *releaser { return &releaser{ch: make(chan struct{})} }

func (r *releaser) release() { r.once.Do(func() { close(r.ch) }) }

// leaderRoute is a route whose first call signals started and blocks until
// released, then calls leader; later calls call follower. Both get the
// request's X-Client value.
func leaderRoute(calls *counter, started chan<- struct{}, rel *releaser, leader, follower func(w http.ResponseWriter, r *http.Request, client string)) Handler {
	return func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		client := r.Header.Get("X-Client")
		if calls.inc() == 1 {
			started <- struct{}{}
			<-rel.ch
			leader(w, r, client)
			return
		}
		follower(w, r, client)
	}
}

func (s *suite) coalesceOneFill(t *testing.T) {
	const n = 50
	var calls counter
	started, rel := make(chan struct{}, 1), newReleaser()
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/slow/:id", Cache: Cached("r"), Handler: leaderRoute(&calls, started, rel,
			func(w http.ResponseWriter, r *http.Request, client string) { text(w, "the one body") },
			func(w http.ResponseWriter, r *http.Request, client string) { text(w, "follower "+client) })},
	}})
	srv, c := server(t, e.h)
	t.Cleanup(rel.release)

	out := make(chan fetched, n)
	for i := 0; i < n; i++ {
		go func(client string) { out <- fetch(context.Background(), c, srv.URL+"/slow/1", client) }(strconv.Itoa(i))
	}
	await(t, started, "the leader's handler")
	waitForWaiters(t, n-1)
	rel.release()
	misses, hits := 0, 0
	for i := 0; i < n; i++ {
		f := await(t, out, "a response")
		if f.err != nil {
			t.Fatalf("client %s: %v", f.client, f.err)
		}
		if f.resp.Status != 200 || f.resp.Body != "the one body" {
			t.Fatalf("client %s got %v, want the one body", f.client, f.resp)
		}
		switch f.resp.cache() {
		case "MISS":
			misses++
		case "HIT":
			hits++
		}
	}
	if misses != 1 || hits != n-1 {
		t.Fatalf("%d MISS and %d HIT, want 1 and %d", misses, hits, n-1)
	}
	expectCalls(t, &calls, 1)
	expectFetch(t, fetch(context.Background(), c, srv.URL+"/slow/1", "late"), 200, "HIT", "the one body")
	expectCalls(t, &calls, 1)
	if st := e.stats("r"); st.Misses != 1 || st.Stores != 1 || st.Coalesced != n-1 || st.Hits != n {
		t.Fatalf("stats %+v, want 1 miss, 1 store, %d coalesced, %d hits", st, n-1, n)
	}
}

func (s *suite) coalesceNotStorable(t *testing.T) {
	const n = 50
	var calls counter
	started, rel := make(chan struct{}, 1), newReleaser()
	own := func(w http.ResponseWriter, r *http.Request, client string) { text(w, "own "+client) }
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/slow/:id", Cache: Cached("r"), Handler: leaderRoute(&calls, started, rel,
			func(w http.ResponseWriter, r *http.Request, client string) {
				http.SetCookie(w, &http.Cookie{Name: "sid", Value: "for-" + client})
				own(w, r, client)
			}, own)},
	}})
	srv, c := server(t, e.h)
	t.Cleanup(rel.release)

	out := make(chan fetched, n)
	for i := 0; i < n; i++ {
		go func(client string) { out <- fetch(context.Background(), c, srv.URL+"/slow/1", client) }(strconv.Itoa(i))
	}
	await(t, started, "the leader's handler")
	waitForWaiters(t, n-1)
	rel.release()
	cookies := 0
	for i := 0; i < n; i++ {
		f := await(t, out, "a response")
		if f.err != nil {
			t.Fatalf("client %s: %v", f.client, f.err)
		}
		if f.resp.Status != 200 || f.resp.Body != "own "+f.client || f.resp.cache() != "MISS" {
			t.Fatalf("client %s got %v, want its own body as a MISS", f.client, f.resp)
		}
		if sc := f.resp.Header.Get("Set-Cookie"); sc != "" {
			cookies++
			if sc != "sid=for-"+f.client {
				t.Fatalf("client %s got another client's cookie %q", f.client, sc)
			}
		}
	}
	if cookies != 1 {
		t.Fatalf("%d responses carried the leader's Set-Cookie, want 1", cookies)
	}
	expectCalls(t, &calls, n)
	if st := e.stats("r"); st.Stores != 0 || st.Coalesced != 0 || st.Hits != 0 || st.NotStored[core.NotStoredSetCookie] != 1 {
		t.Fatalf("stats %+v, want nothing stored or coalesced, 1 set-cookie", st)
	}
	// The key is still usable: the next request fills it.
	expectFetch(t, fetch(context.Background(), c, srv.URL+"/slow/1", "late"), 200, "MISS", "own late")
	expectFetch(t, fetch(context.Background(), c, srv.URL+"/slow/1", "later"), 200, "HIT", "own late")
	expectCalls(t, &calls, n+1)
}

// coalescePanic: a panicking leader releases its waiters with a shared 500
// (they do not run the handler), and nothing is stored.
func (s *suite) coalescePanic(t *testing.T) {
	const n = 10
	var calls counter
	started, rel := make(chan struct{}, 1), newReleaser()
	own := func(w http.ResponseWriter, r *http.Request, client string) { text(w, "own "+client) }
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/slow/:id", Cache: Cached("r"), Handler: leaderRoute(&calls, started, rel,
			func(w http.ResponseWriter, r *http.Request, client string) { panic("cachetest: deliberate panic") }, own)},
	}})
	srv, c := server(t, e.h)
	t.Cleanup(rel.release)

	out := make(chan fetched, n)
	for i := 0; i < n; i++ {
		go func(client string) { out <- fetch(context.Background(), c, srv.URL+"/slow/1", client) }(strconv.Itoa(i))
	}
	await(t, started, "the leader's handler")
	waitForWaiters(t, n-1)
	rel.release()
	// The leader's panic reaches the framework's recovery (a 500); the
	// waiters share the failure (a plain 500, X-Cache: MISS) without
	// running the handler.
	for i := 0; i < n; i++ {
		f := await(t, out, "a response (a panicking leader must release its waiters)")
		if f.err != nil {
			t.Fatalf("client %s: %v", f.client, f.err)
		}
		if f.resp.Status != http.StatusInternalServerError {
			t.Fatalf("client %s got %v, want the failure (500)", f.client, f.resp)
		}
	}
	expectCalls(t, &calls, 1)
	if st := e.stats("r"); st.Stores != 0 || st.Coalesced != 0 || st.NotStored[core.NotStoredPanic] != 1 {
		t.Fatalf("stats %+v, want nothing stored, 1 panic", st)
	}
	// The key remembers the failure for a moment (shared, never stored),
	// then the next request fills.
	deadline := time.Now().Add(20 * time.Second)
	for {
		f := fetch(context.Background(), c, srv.URL+"/slow/1", "late")
		if f.err == nil && f.resp.Status == 200 {
			expectFetch(t, f, 200, "MISS", "own late")
			break
		}
		if f.err != nil || f.resp.Status != http.StatusInternalServerError || f.resp.cache() != "MISS" {
			t.Fatalf("within the failure memory: %v %v, want the shared 500", f.resp, f.err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the failure memory never ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	expectFetch(t, fetch(context.Background(), c, srv.URL+"/slow/1", "later"), 200, "HIT", "own late")
	expectCalls(t, &calls, 2)
}

func (s *suite) coalesceLeaderGone(t *testing.T) {
	var calls counter
	started, rel := make(chan struct{}, 1), newReleaser()
	var serverCtx sync.Map // X-Client -> the server side request context
	fillErr := make(chan error, 1)
	body := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: more than socket buffers take at once
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{
		Before: func(w http.ResponseWriter, r *http.Request) { serverCtx.Store(r.Header.Get("X-Client"), r.Context()) },
		Routes: []Route{
			{Method: "GET", Path: "/slow/:id", Cache: Cached("r"), Handler: leaderRoute(&calls, started, rel,
				func(w http.ResponseWriter, r *http.Request, client string) {
					fillErr <- r.Context().Err()
					w.Header().Set("Content-Type", "text/plain")
					for i := 0; i < len(body); i += 4096 {
						_, _ = io.WriteString(w, body[i:i+4096])
					}
				},
				func(w http.ResponseWriter, r *http.Request, client string) { text(w, "follower "+client) })},
		},
	})
	srv, c := server(t, e.h)
	t.Cleanup(rel.release)
	target := srv.URL + "/slow/1"

	actx, cancel := context.WithCancel(context.Background())
	defer cancel()
	aDone, bDone := make(chan fetched, 1), make(chan fetched, 1)
	go func() { aDone <- fetch(actx, c, target, "A") }()
	await(t, started, "the leader's handler")
	go func() { bDone <- fetch(context.Background(), c, target, "B") }()
	waitForWaiters(t, 1)

	cancel() // the leader's client goes away
	if fa := await(t, aDone, "the leader's client to give up"); fa.err == nil {
		t.Fatalf("the leader's client was not cancelled: %v", fa.resp)
	}
	v, _ := serverCtx.Load("A")
	await(t, v.(context.Context).Done(), "the server to see the leader's client leave")
	rel.release()

	if err := await(t, fillErr, "the fill"); err != nil {
		t.Fatalf("the fill's context was cancelled with the first caller: %v", err)
	}
	fb := await(t, bDone, "the waiter's response")
	if fb.err != nil {
		t.Fatalf("waiter: %v", fb.err)
	}
	if fb.resp.Status != 200 || fb.resp.Body != body || fb.resp.cache() != "HIT" {
		t.Fatalf("waiter got %v, want the full body as a HIT", fb.resp)
	}
	expectFetch(t, fetch(context.Background(), c, target, "C"), 200, "HIT", body)
	expectCalls(t, &calls, 1)
	if st := e.stats("r"); st.Stores != 1 || st.Coalesced != 1 {
		t.Fatalf("stats %+v, want 1 store, 1 coalesced", st)
	}
}

// A waiter whose client leaves stops waiting without disturbing the fill.
func (s *suite) coalesceWaiterGone(t *testing.T) {
	var calls counter
	started, rel := make(chan struct{}, 1), newReleaser()
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/slow/:id", Cache: Cached("r"), Handler: leaderRoute(&calls, started, rel,
			func(w http.ResponseWriter, r *http.Request, client string) { text(w, "leader body") },
			func(w http.ResponseWriter, r *http.Request, client string) { text(w, "follower "+client) })},
	}})
	srv, c := server(t, e.h)
	t.Cleanup(rel.release)
	target := srv.URL + "/slow/1"

	aDone, bDone := make(chan fetched, 1), make(chan fetched, 1)
	go func() { aDone <- fetch(context.Background(), c, target, "A") }()
	await(t, started, "the leader's handler")
	bctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { bDone <- fetch(bctx, c, target, "B") }()
	waitForWaiters(t, 1)
	cancel()
	if fb := await(t, bDone, "the waiter's client to give up"); fb.err == nil {
		t.Fatalf("the waiter's client was not cancelled: %v", fb.resp)
	}
	waitForWaiters(t, 0) // it no longer waits, on the server either
	rel.release()
	expectFetch(t, await(t, aDone, "the leader's response"), 200, "MISS", "leader body")
	expectFetch(t, fetch(context.Background(), c, target, "C"), 200, "HIT", "leader body")
	if n := calls.load(); n > 2 {
		t.Fatalf("origin calls = %d, want at most 2 (the fill, and perhaps the departed waiter's own run)", n)
	}
}

// ---------------------------------------------------------------------------
// 9. Expiry

func (s *suite) expiry(t *testing.T) {
	const ttl = 50 * time.Millisecond
	var calls counter
	handler := func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
		text(w, fmt.Sprintf("#%d", calls.inc()))
	}
	e := s.setup(t, map[string]core.RegionConfig{
		"short": {TTL: ttl},
		// Kept past its TTL: the backend still holds the entry, so only the
		// core's freshness check keeps it from being served as a HIT.
		"kept": {TTL: ttl, Stale: time.Hour},
	}, App{Routes: []Route{
		{Method: "GET", Path: "/short", Cache: Cached("short"), Handler: handler},
		{Method: "GET", Path: "/kept", Cache: Cached("kept"), Handler: handler},
	}})
	// An entry is fresh from when its handler started until TTL later:
	// a request answered within TTL of a moment before the fill must hit,
	// and a request made more than TTL after the last fill ended must not.
	// On a slow machine the second request may itself come after the TTL
	// and, for "kept", refresh the stale entry before it returns: the wait
	// is therefore counted from the second request's end.
	for _, target := range []string{"/short", "/kept"} {
		before := time.Now()
		first := e.get(target)
		e.expect(first, 200, "MISS", "*")
		r := e.get(target)
		if time.Since(before) < ttl {
			e.expect(r, 200, "HIT", first.Body)
		}
		filled := time.Now()
		for time.Since(filled) <= ttl {
			time.Sleep(5 * time.Millisecond)
		}
		r = e.get(target)
		switch {
		case target == "/short":
			e.expect(r, 200, "MISS", "*") // expired: filled again
		case r.cache() == "HIT":
			// "kept" may answer MISS, or STALE once stale serving exists: never HIT.
			t.Fatalf("%s after its TTL: %v, want no HIT", target, r)
		}
		if r.cache() == "MISS" && r.Body == first.Body {
			t.Fatalf("%s after its TTL: a MISS replayed the old body %q", target, r.Body)
		}
	}
}

// ---------------------------------------------------------------------------
// 10. Stats

func (s *suite) stats(t *testing.T) {
	var calls counter
	show := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		calls.inc()
		text(w, "s "+p("id"))
	}
	e := s.setup(t, map[string]core.RegionConfig{"s": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/s/:id", Cache: Cached("s", core.Tags("s:{id}")), Handler: show},
		{Method: "POST", Path: "/s/:id", Cache: Cached("s"), Handler: show},
		{Method: "GET", Path: "/missing", Cache: Cached("s"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			calls.inc()
			http.NotFound(w, r)
		}},
	}})
	if st := e.stats("s"); st.Hits+st.Misses+st.Stores+st.Invalidations != 0 || len(st.Bypasses)+len(st.NotStored) != 0 {
		t.Fatalf("fresh stats %+v, want zero", st)
	}
	e.expect(e.get("/s/1"), 200, "MISS", "s 1")
	hit := e.get("/s/1")
	e.expect(hit, 200, "HIT", "s 1")
	e.expect(e.get("/s/1", "If-None-Match", hit.Header.Get("ETag")), 304, "HIT", "")
	e.expect(e.do(http.MethodHead, "/s/1"), 200, "HIT", "")
	e.expect(e.do(http.MethodHead, "/s/2"), 200, "BYPASS", "*")
	e.expect(e.get("/s/1", "Cookie", "a=b"), 200, "BYPASS", "s 1")
	e.expect(e.get("/s/1", "Authorization", "Basic eDp5"), 200, "BYPASS", "s 1")
	e.expect(e.do(http.MethodPost, "/s/1"), 200, "BYPASS", "s 1")
	e.expect(e.get("/missing"), 404, "MISS", "*")
	if err := e.rc.InvalidateTags(bg(), "s:1"); err != nil {
		t.Fatal(err)
	}
	e.expect(e.get("/s/1"), 200, "MISS", "s 1")
	if err := e.rc.InvalidateRegion(bg(), "s"); err != nil {
		t.Fatal(err)
	}
	if err := e.rc.InvalidateKey(bg(), "s", "/s/1"); err != nil {
		t.Fatal(err)
	}
	expectCalls(t, &calls, 7)

	got := e.stats("s")
	// Compare the counters these requests move (Stats grows new fields).
	type counters struct {
		Hits, Misses, Coalesced, Stores, Stale, Invalidations, Errors, Corrupt uint64
		Bypasses                                                               map[core.BypassReason]uint64
		NotStored                                                              map[core.NotStoredReason]uint64
	}
	have := counters{got.Hits, got.Misses, got.Coalesced, got.Stores, got.Stale, got.Invalidations, got.Errors, got.Corrupt, got.Bypasses, got.NotStored}
	want := counters{
		Hits: 3, Misses: 3, Stores: 2, Invalidations: 3,
		Bypasses: map[core.BypassReason]uint64{
			core.BypassHead: 1, core.BypassCookie: 1, core.BypassAuthorization: 1, core.BypassMethod: 1,
		},
		NotStored: map[core.NotStoredReason]uint64{core.NotStoredStatus: 1},
	}
	if fmt.Sprintf("%+v", have) != fmt.Sprintf("%+v", want) {
		t.Fatalf("stats\n got %+v\nwant %+v", have, want)
	}
	if all := e.rc.Stats(); len(all) != 1 {
		t.Fatalf("Cache.Stats has %d regions, want 1", len(all))
	}
}
