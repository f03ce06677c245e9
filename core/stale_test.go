package core_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Tests of the two lifetimes (fresh, then stale-while-revalidate and
// stale-if-error windows) and of XFetch early refresh, on the memory
// backend. No test asserts a wall-clock duration: entries are aged with
// small TTLs and bounded polling loops, and behaviour is counted (origin
// calls, X-Cache values, Stats).

const staleTestPattern = "/items/:id"

// serveNext runs one GET (or method) through rt with next.
func serveNext(rt *core.Route, method, target string, next adapter.Next) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, nil)
	_ = adapter.ServeRoute(rt, w, req, noParams, staleTestPattern, next)
	return w
}

// entryState classifies what the stored entry of target is good for now,
// without running a request (so without counting or refreshing anything).
func entryState(t testing.TB, rt *core.Route, target string) core.Freshness {
	t.Helper()
	f, ok, err := core.EntryFreshness(rt, target, staleTestPattern)
	if !ok {
		t.Fatalf("no key for %s", target)
	}
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	return f
}

// waitState polls (bounded) until target's entry reaches want.
func waitState(t testing.TB, rt *core.Route, target string, want core.Freshness) {
	t.Helper()
	for i := 0; i < 6000; i++ { // 30 s: a bound for a loaded machine
		if entryState(t, rt, target) == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never reached state %d (now %d)", target, want, entryState(t, rt, target))
}

// Within the stale window a request is answered from the stale entry at
// once, and exactly one background refresh runs per key, however many
// requests see the stale entry meanwhile; afterwards the refreshed entry
// is a HIT.
func TestStaleWhileRevalidateOneRefreshPerKey(t *testing.T) {
	for _, max := range []int{0, 1} {
		t.Run(fmt.Sprintf("MaxRefreshes=%d", max), func(t *testing.T) { testOneRefreshPerKey(t, max) })
	}
}

func testOneRefreshPerKey(t *testing.T, maxRefreshes int) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, Stale: time.Minute, MaxRefreshes: maxRefreshes})
	var calls atomic.Int64
	entered := make(chan struct{})
	release := make(chan struct{})
	next := func(w http.ResponseWriter, r *http.Request) error {
		n := calls.Add(1)
		if n == 2 {
			close(entered)
			<-release // the refresh is slow
		}
		fmt.Fprintf(w, "v%d", n)
		return nil
	}
	if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "MISS" || w.Body.String() != "v1" {
		t.Fatalf("fill: %q %q", xc(w), w.Body.String())
	}
	waitState(t, rt, "/items/1", core.StaleOK)

	const n = 20
	type result struct{ xcache, body string }
	results := make(chan result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			w := serveNext(rt, "GET", "/items/1", next)
			results <- result{xc(w), w.Body.String()}
		}()
	}
	close(start)
	<-entered
	// Every request but the one running the refresh answers while the
	// refresh is still blocked: they never wait for the origin.
	for i := 0; i < n-1; i++ {
		if r := <-results; r.xcache != "STALE" || r.body != "v1" {
			t.Fatalf("stale request %d: %q %q", i, r.xcache, r.body)
		}
	}
	close(release)
	wg.Wait()
	if r := <-results; r.xcache != "STALE" || r.body != "v1" {
		t.Fatalf("refreshing request: %q %q", r.xcache, r.body)
	}
	if got := calls.Load(); got != 2 {
		t.Fatalf("origin called %d times, want 2 (one fill, one refresh)", got)
	}
	if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "HIT" || w.Body.String() != "v2" {
		t.Fatalf("after refresh: %q %q, want HIT v2", xc(w), w.Body.String())
	}
	st := rt.Region().Stats()
	if st.Stale != n || st.Refreshes != 1 || st.Stores != 2 || st.Misses != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Requests that found the key already refreshing are not "skipped for
	// MaxRefreshes": that counter is for refreshes that could not start.
	if st.RefreshSkipped != 0 {
		t.Fatalf("RefreshSkipped = %d with one key refreshing", st.RefreshSkipped)
	}
}

// The stale response reaches the client before the refresh runs: over a
// real connection the client reads the whole stale body while the
// handler refreshing the entry is still blocked.
func TestStaleServedBeforeRefreshCompletes(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {TTL: 50 * time.Millisecond, Stale: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mw, err := c.Middleware("r")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n == 2 {
			<-release
		}
		fmt.Fprintf(w, "v%d", n)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release) // runs before srv.Close: the blocked refresh ends
	get := func() (string, string, error) {
		resp, err := srv.Client().Get(srv.URL + "/items/1")
		if err != nil {
			return "", "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.Header.Get("X-Cache"), string(b), err
	}
	if x, b, err := get(); err != nil || x != "MISS" || b != "v1" {
		t.Fatalf("fill: %q %q %v", x, b, err)
	}
	waitUntil(t, "entry to go stale", func() bool { return staleByHead(t, srv.URL+"/items/1") })
	type res struct {
		x, b string
		err  error
	}
	got := make(chan res, 1)
	go func() {
		x, b, err := get()
		got <- res{x, b, err}
	}()
	select {
	case r := <-got:
		if r.err != nil || r.x != "STALE" || r.b != "v1" {
			t.Fatalf("stale answer: %q %q %v", r.x, r.b, r.err)
		}
	case <-time.After(10 * time.Second): // a failure bound, not a measurement
		t.Fatal("the stale response did not reach the client while the refresh was blocked")
	}
	waitUntil(t, "refresh to start", func() bool { return calls.Load() == 2 })
}

// staleByHead reports whether a HEAD is answered STALE (a HEAD never
// triggers a refresh, so polling with it runs no handler).
func staleByHead(t testing.TB, url string) bool {
	req, _ := http.NewRequest("HEAD", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("X-Cache") == "STALE"
}

// A refresh whose key is invalidated while its handler runs does not
// produce a servable entry: the next request is a MISS with new data.
func TestStaleRefreshInvalidatedMeanwhileNotServed(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, Stale: time.Minute}, core.Tags("items"))
	c := core.RouteCache(rt)
	var version, calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	next := func(w http.ResponseWriter, r *http.Request) error {
		v := version.Load() // the handler reads the data...
		if calls.Add(1) == 2 {
			close(entered)
			<-release // ...and is slow to answer
		}
		fmt.Fprintf(w, "data%d", v)
		return nil
	}
	serveNext(rt, "GET", "/items/1", next)
	waitState(t, rt, "/items/1", core.StaleOK)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serveNext(rt, "GET", "/items/1", next) }()
	<-entered
	version.Add(1) // the data changes, then the cache is told
	if err := c.InvalidateTags(context.Background(), "items"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if w := <-done; xc(w) != "STALE" || w.Body.String() != "data0" {
		t.Fatalf("stale answer: %q %q", xc(w), w.Body.String())
	}
	if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "MISS" || w.Body.String() != "data1" {
		t.Fatalf("after invalidated refresh: %q %q, want MISS data1", xc(w), w.Body.String())
	}
	if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "HIT" || w.Body.String() != "data1" {
		t.Fatalf("refill: %q %q", xc(w), w.Body.String())
	}
}

// MaxRefreshes bounds the refreshes running at once in a region; a stale
// request that cannot start one is still served stale, runs no handler,
// and is counted in RefreshSkipped. A later stale request refreshes.
func TestStaleMaxRefreshesBound(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, Stale: time.Minute, MaxRefreshes: 1})
	var calls sync.Map // path -> *atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	next := func(w http.ResponseWriter, r *http.Request) error {
		v, _ := calls.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n := v.(*atomic.Int64).Add(1)
		if r.URL.Path == "/items/1" && n == 2 {
			close(entered)
			<-release
		}
		fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
		return nil
	}
	count := func(p string) int64 {
		v, ok := calls.Load(p)
		if !ok {
			return 0
		}
		return v.(*atomic.Int64).Load()
	}
	serveNext(rt, "GET", "/items/1", next)
	serveNext(rt, "GET", "/items/2", next)
	waitState(t, rt, "/items/1", core.StaleOK)
	waitState(t, rt, "/items/2", core.StaleOK)
	done := make(chan struct{})
	go func() { serveNext(rt, "GET", "/items/1", next); close(done) }()
	<-entered // /items/1's refresh holds the only slot
	w := serveNext(rt, "GET", "/items/2", next)
	if xc(w) != "STALE" || w.Body.String() != "/items/2 v1" {
		t.Fatalf("skipped refresh: %q %q", xc(w), w.Body.String())
	}
	if n := count("/items/2"); n != 1 {
		t.Fatalf("/items/2 origin calls %d, want 1: its refresh should have been skipped", n)
	}
	if st := rt.Region().Stats(); st.RefreshSkipped != 1 || st.Refreshes != 1 {
		t.Fatalf("stats %+v", st)
	}
	close(release)
	<-done
	if w := serveNext(rt, "GET", "/items/2", next); xc(w) != "STALE" {
		t.Fatalf("second stale request: %q", xc(w))
	}
	if n := count("/items/2"); n != 2 {
		t.Fatalf("/items/2 not refreshed once a slot was free: %d calls", n)
	}
	if w := serveNext(rt, "GET", "/items/2", next); xc(w) != "HIT" || w.Body.String() != "/items/2 v2" {
		t.Fatalf("after refresh: %q %q", xc(w), w.Body.String())
	}
	if st := rt.Region().Stats(); st.RefreshSkipped != 1 || st.Refreshes != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A failed refresh (5xx, panic) stores nothing: the stale entry stays and
// keeps being served within the window.
func TestStaleRefreshFailureKeepsStaleEntry(t *testing.T) {
	for _, mode := range []string{"500", "panic", "error"} {
		t.Run(mode, func(t *testing.T) {
			rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, Stale: time.Minute})
			var calls atomic.Int64
			next := func(w http.ResponseWriter, r *http.Request) error {
				if calls.Add(1) == 1 {
					fmt.Fprint(w, "good")
					return nil
				}
				switch mode {
				case "500":
					w.WriteHeader(500)
					fmt.Fprint(w, "broken")
				case "panic":
					panic("refresh exploded")
				case "error":
					return errors.New("db down")
				}
				return nil
			}
			serveNext(rt, "GET", "/items/1", next)
			waitState(t, rt, "/items/1", core.StaleOK)
			for i := 0; i < 3; i++ {
				w := serveNext(rt, "GET", "/items/1", next)
				if xc(w) != "STALE" || w.Body.String() != "good" || w.Code != 200 {
					t.Fatalf("request %d: %d %q %q", i, w.Code, xc(w), w.Body.String())
				}
			}
			if st := rt.Region().Stats(); st.Stores != 1 || st.Refreshes != 3 || calls.Load() != 4 {
				t.Fatalf("calls %d, stats %+v", calls.Load(), st)
			}
		})
	}
}

// Stale-if-error: within its window, a failing handler (5xx, error,
// panic, FillTimeout) is replaced by the stale entry (X-Cache STALE),
// nothing is stored, and StaleIfError counts it; a success replaces the
// entry.
func TestStaleIfError(t *testing.T) {
	for _, mode := range []string{"500", "503", "error", "panic", "timeout"} {
		t.Run(mode, func(t *testing.T) {
			rc := core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute}
			if mode == "timeout" {
				rc.FillTimeout = 300 * time.Millisecond
			}
			rt := testRoute(t, rc)
			var fail atomic.Bool
			var calls atomic.Int64
			next := func(w http.ResponseWriter, r *http.Request) error {
				n := calls.Add(1)
				if fail.Load() {
					switch mode {
					case "500":
						w.WriteHeader(500)
						fmt.Fprint(w, "broken")
					case "503":
						w.Header().Set("Retry-After", "5")
						w.WriteHeader(503)
					case "error":
						return errors.New("db down")
					case "panic":
						panic("handler exploded")
					case "timeout":
						<-r.Context().Done()      // the handler honours the fill's deadline...
						fmt.Fprint(w, "too late") // ...and still answers 200
					}
					return nil
				}
				w.Header().Set("X-Gen", fmt.Sprint(n))
				fmt.Fprintf(w, "good%d", n)
				return nil
			}
			if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "MISS" || w.Body.String() != "good1" {
				t.Fatalf("fill: %q %q", xc(w), w.Body.String())
			}
			waitState(t, rt, "/items/1", core.ErrorOnly)
			fail.Store(true)
			for i := 0; i < 2; i++ {
				w := serveNext(rt, "GET", "/items/1", next)
				if w.Code != 200 || xc(w) != "STALE" || w.Body.String() != "good1" || w.Header().Get("X-Gen") != "1" {
					t.Fatalf("failure %d: %d %q %q %v", i, w.Code, xc(w), w.Body.String(), w.Header())
				}
				if w.Header().Get("Retry-After") != "" {
					t.Fatal("a header of the failed response leaked into the stale one")
				}
			}
			st := rt.Region().Stats()
			if st.StaleIfError != 2 || st.Stale != 2 || st.Stores != 1 || calls.Load() != 3 {
				t.Fatalf("calls %d, stats %+v", calls.Load(), st)
			}
			fail.Store(false)
			if w := serveNext(rt, "GET", "/items/1", next); w.Code != 200 || xc(w) != "MISS" || w.Body.String() != "good4" {
				t.Fatalf("recovery: %d %q %q", w.Code, xc(w), w.Body.String())
			}
			if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "HIT" || w.Body.String() != "good4" {
				t.Fatalf("after recovery: %q %q", xc(w), w.Body.String())
			}
		})
	}
}

// Without a stale entry (or past the window) a failure goes through as it
// is: the client sees the 500, and it is not stored.
func TestStaleIfErrorWithoutEntryPassesFailure(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute})
	var calls atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		w.WriteHeader(500)
		fmt.Fprint(w, "broken")
		return nil
	}
	for i := 0; i < 2; i++ {
		w := serveNext(rt, "GET", "/items/1", next)
		if w.Code != 500 || w.Body.String() != "broken" || xc(w) != "MISS" {
			t.Fatalf("request %d: %d %q %q", i, w.Code, xc(w), w.Body.String())
		}
	}
	if st := rt.Region().Stats(); calls.Load() != 2 || st.Stores != 0 || st.StaleIfError != 0 || st.NotStored[core.NotStoredStatus] != 2 {
		t.Fatalf("calls %d stats %+v", calls.Load(), st)
	}
}

// Concurrent requests waiting for a fill that fails are all answered
// from the stale entry; the handler runs once.
func TestStaleIfErrorWaitersServedStale(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute})
	var calls atomic.Int64
	var fail atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	next := func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		if fail.Load() {
			close(entered)
			<-release
			w.WriteHeader(502)
			return nil
		}
		fmt.Fprint(w, "good")
		return nil
	}
	serveNext(rt, "GET", "/items/1", next)
	waitState(t, rt, "/items/1", core.ErrorOnly)
	fail.Store(true)
	const n = 10
	out := make(chan *httptest.ResponseRecorder, n)
	go func() { out <- serveNext(rt, "GET", "/items/1", next) }()
	<-entered
	for i := 1; i < n; i++ {
		go func() { out <- serveNext(rt, "GET", "/items/1", next) }()
	}
	// Release the fill only once every follower waits for it.
	waitUntil(t, "followers to wait on the fill", func() bool { return flightWaiters() == n-1 })
	close(release)
	for i := 0; i < n; i++ {
		w := <-out
		if w.Code != 200 || xc(w) != "STALE" || w.Body.String() != "good" {
			t.Fatalf("request %d: %d %q %q", i, w.Code, xc(w), w.Body.String())
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("origin called %d times, want 2: followers must not run the failing handler", calls.Load())
	}
	if st := rt.Region().Stats(); st.StaleIfError != n || st.Stores != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A failing response too large to hold back (over MaxEntryBytes) starts
// streaming once it outgrows the cap and loses stale-if-error protection:
// the client gets it whole, nothing is stored.
func TestStaleIfErrorTooLargeStreamsThrough(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute, MaxEntryBytes: 64})
	var fail atomic.Bool
	big := strings.Repeat("x", 500)
	next := func(w http.ResponseWriter, r *http.Request) error {
		if fail.Load() {
			w.WriteHeader(500)
			for i := 0; i < 5; i++ {
				io.WriteString(w, big[:100])
			}
			return nil
		}
		fmt.Fprint(w, "small")
		return nil
	}
	serveNext(rt, "GET", "/items/1", next)
	waitState(t, rt, "/items/1", core.ErrorOnly)
	fail.Store(true)
	w := serveNext(rt, "GET", "/items/1", next)
	if w.Code != 500 || w.Body.String() != big || xc(w) != "MISS" {
		t.Fatalf("large failure: %d %q body %d bytes", w.Code, xc(w), w.Body.Len())
	}
	if st := rt.Region().Stats(); st.StaleIfError != 0 || st.Stores != 1 || st.NotStored[core.NotStoredTooLarge] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A handler that panics after its response outgrew the hold buffer (so
// part of it already went to the client) must not be reported as a
// complete response: the panic reaches the server, which aborts the
// connection, as it would without the cache.
func TestStaleIfErrorLargeResponsePanicPropagates(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute, MaxEntryBytes: 64})
	var fail atomic.Bool
	next := func(w http.ResponseWriter, r *http.Request) error {
		if fail.Load() {
			io.WriteString(w, strings.Repeat("x", 200))
			panic("died mid-stream")
		}
		fmt.Fprint(w, "small")
		return nil
	}
	serveNext(rt, "GET", "/items/1", next)
	waitState(t, rt, "/items/1", core.ErrorOnly)
	fail.Store(true)
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		serveNext(rt, "GET", "/items/1", next)
	}()
	if recovered == nil {
		t.Fatal("a panic after part of the body was sent was swallowed: the client sees a truncated 200 as complete")
	}
}

// An entry made unusable by an invalidation is never served stale, in
// either window: not for stale-while-revalidate, not for stale-if-error.
func TestInvalidatedEntryNeverServedStale(t *testing.T) {
	for _, window := range []string{"stale", "stale-if-error"} {
		for _, kind := range []string{"tag", "key", "region"} {
			t.Run(window+"/"+kind, func(t *testing.T) {
				rc := core.RegionConfig{TTL: 50 * time.Millisecond}
				want := core.StaleOK
				if window == "stale" {
					rc.Stale = time.Minute
				} else {
					rc.StaleIfError = time.Minute
					want = core.ErrorOnly
				}
				rt := testRoute(t, rc, core.Tags("items"))
				var fail atomic.Bool
				var calls atomic.Int64
				next := func(w http.ResponseWriter, r *http.Request) error {
					n := calls.Add(1)
					if fail.Load() {
						w.WriteHeader(500)
						fmt.Fprint(w, "broken")
						return nil
					}
					fmt.Fprintf(w, "v%d", n)
					return nil
				}
				serveNext(rt, "GET", "/items/1", next)
				waitState(t, rt, "/items/1", want)
				ctx := context.Background()
				var err error
				switch kind {
				case "tag":
					err = core.RouteCache(rt).InvalidateTags(ctx, "items")
				case "key":
					err = core.RouteCache(rt).InvalidateKey(ctx, "r", "/items/1")
				case "region":
					err = core.RouteCache(rt).InvalidateRegion(ctx, "r")
				}
				if err != nil {
					t.Fatal(err)
				}
				if s := entryState(t, rt, "/items/1"); s != core.Unusable {
					t.Fatalf("invalidated entry classified %d", s)
				}
				fail.Store(true)
				w := serveNext(rt, "GET", "/items/1", next)
				if w.Code != 500 || xc(w) == "STALE" || w.Body.String() != "broken" {
					t.Fatalf("failing handler after invalidation: %d %q %q", w.Code, xc(w), w.Body.String())
				}
				fail.Store(false)
				w = serveNext(rt, "GET", "/items/1", next)
				if w.Code != 200 || xc(w) != "MISS" || w.Body.String() != "v3" {
					t.Fatalf("after invalidation: %d %q %q", w.Code, xc(w), w.Body.String())
				}
				if st := rt.Region().Stats(); st.Stale != 0 || st.StaleIfError != 0 {
					t.Fatalf("stale served: %+v", st)
				}
			})
		}
	}
}

// XFetch early refresh: with EarlyRefresh and a handler that takes
// measurable time, a stream of hits refreshes the entry before it
// expires (the new version is first seen as a HIT, with no MISS between
// versions), and the refreshes are few compared with the hits.
func TestEarlyRefreshBeforeExpiry(t *testing.T) {
	const ttl = 300 * time.Millisecond
	rt := testRoute(t, core.RegionConfig{TTL: ttl, EarlyRefresh: 1})
	var calls atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		n := calls.Add(1)
		time.Sleep(20 * time.Millisecond) // the handler's delta
		fmt.Fprintf(w, "v%d", n)
		return nil
	}
	if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "MISS" {
		t.Fatalf("fill: %q", xc(w))
	}
	var hits, misses, seamless int
	last := "v1"
	missedSinceChange := false
	for i := 0; i < 20000 && seamless < 2; i++ {
		w := serveNext(rt, "GET", "/items/1", next)
		switch xc(w) {
		case "HIT":
			hits++
		case "MISS":
			misses++
			missedSinceChange = true
		default:
			t.Fatalf("unexpected %q", xc(w))
		}
		if b := w.Body.String(); b != last {
			// A new version: seamless if no MISS happened since the last one.
			if xc(w) == "HIT" && !missedSinceChange {
				seamless++
			}
			last, missedSinceChange = b, false
		}
		time.Sleep(time.Millisecond)
	}
	st := rt.Region().Stats()
	t.Logf("hits %d misses %d origin calls %d early refreshes %d seamless version changes %d", hits, misses, calls.Load(), st.EarlyRefreshes, seamless)
	if seamless < 2 || st.EarlyRefreshes < 2 {
		t.Fatalf("no early refresh before expiry: %d seamless changes, stats %+v", seamless, st)
	}
	// Bounded: a refresh happens near expiry, not on every hit.
	if int(st.EarlyRefreshes)*10 > hits {
		t.Fatalf("%d early refreshes for %d hits", st.EarlyRefreshes, hits)
	}
	if st.Refreshes != st.EarlyRefreshes || int64(st.Refreshes)+int64(misses)+1 != calls.Load() {
		t.Fatalf("origin calls %d, stats %+v", calls.Load(), st)
	}
}

// Far from expiry XFetch never fires, and with EarlyRefresh off a hot key
// is not refreshed early: it expires and misses.
func TestEarlyRefreshOnlyNearExpiry(t *testing.T) {
	t.Run("far from expiry", func(t *testing.T) {
		rt := testRoute(t, core.RegionConfig{TTL: time.Hour, EarlyRefresh: 1})
		var calls atomic.Int64
		next := func(w http.ResponseWriter, r *http.Request) error {
			calls.Add(1)
			time.Sleep(5 * time.Millisecond)
			fmt.Fprint(w, "x")
			return nil
		}
		for i := 0; i < 500; i++ {
			serveNext(rt, "GET", "/items/1", next)
		}
		if st := rt.Region().Stats(); st.EarlyRefreshes != 0 || calls.Load() != 1 || st.Hits != 499 {
			t.Fatalf("calls %d stats %+v", calls.Load(), st)
		}
	})
	t.Run("off", func(t *testing.T) {
		rt := testRoute(t, core.RegionConfig{TTL: 100 * time.Millisecond})
		var calls atomic.Int64
		next := func(w http.ResponseWriter, r *http.Request) error {
			calls.Add(1)
			time.Sleep(20 * time.Millisecond)
			fmt.Fprint(w, "x")
			return nil
		}
		serveNext(rt, "GET", "/items/1", next)
		misses := 0
		for i := 0; i < 5000 && misses < 2; i++ {
			if xc(serveNext(rt, "GET", "/items/1", next)) == "MISS" {
				misses++
			}
			time.Sleep(time.Millisecond)
		}
		if st := rt.Region().Stats(); st.EarlyRefreshes != 0 || st.Refreshes != 0 || misses < 2 {
			t.Fatalf("misses %d stats %+v", misses, st)
		}
	})
}

// Under concurrent hits, early refreshes stay bounded: at most one runs
// per key at a time, and they are a small fraction of the hits.
func TestEarlyRefreshConcurrentBounded(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{TTL: 200 * time.Millisecond, EarlyRefresh: 2})
	var calls, running, maxRunning atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		fmt.Fprint(w, "x")
		return nil
	}
	serveNext(rt, "GET", "/items/1", next)
	var wg sync.WaitGroup
	var hits atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && rt.Region().Stats().EarlyRefreshes < 3; i++ {
				if xc(serveNext(rt, "GET", "/items/1", next)) == "HIT" {
					hits.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	st := rt.Region().Stats()
	t.Logf("hits %d, origin calls %d, stats %+v", hits.Load(), calls.Load(), st)
	if st.EarlyRefreshes < 3 {
		t.Fatalf("too few early refreshes: %+v", st)
	}
	if maxRunning.Load() != 1 {
		t.Fatalf("%d handler runs at once for one key", maxRunning.Load())
	}
	if st.Refreshes*10 > uint64(hits.Load()) {
		t.Fatalf("%d refreshes for %d hits", st.Refreshes, hits.Load())
	}
}

// A handler that ignores its context and runs past FillTimeout does not
// hold its key: a request arriving after FillTimeout leads a new fill,
// whose response is stored and served while the stuck one still runs.
func TestStuckFillIsAbandoned(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {FillTimeout: 30 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, _ := c.Route("r")
	release := make(chan struct{})
	started := make(chan struct{})
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(started)
			<-release // stuck, deaf to its context
		}
		fmt.Fprintf(w, "call %d", calls.Load())
	}
	stuck := make(chan *httptest.ResponseRecorder)
	go func() { stuck <- serveOnce(rt, "/items/1", noParams, h) }()
	<-started
	time.Sleep(60 * time.Millisecond) // past FillTimeout: the flight is abandoned
	if w := serveOnce(rt, "/items/1", noParams, h); w.Body.String() != "call 2" || w.Header().Get("X-Cache") != "MISS" {
		t.Fatalf("second request: %q %q", w.Header().Get("X-Cache"), w.Body.String())
	}
	// Before the fix the second request waited on the stuck flight and ran
	// the handler without storing it; now its fill stored the response.
	if w := serveOnce(rt, "/items/1", noParams, h); w.Header().Get("X-Cache") != "HIT" || w.Body.String() != "call 2" {
		t.Fatalf("third request while the first is stuck: %q %q (calls %d)", w.Header().Get("X-Cache"), w.Body.String(), calls.Load())
	}
	close(release)
	if w := <-stuck; w.Code != 200 {
		t.Fatalf("stuck request ended with %d", w.Code)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d handler calls, want 2", n)
	}
}
