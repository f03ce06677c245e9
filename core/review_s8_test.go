package core_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Session 8 review: black-box tests of the memory hit path (the key on
// the stack, the entry's own counter names), the miss path (one
// allocation per entry, the recorder in the flight) and the near cache's
// kept counter values.

// rvServe runs one request through rt (pattern "/items/:id") with header
// hdr set on the request.
func rvServe(rt *core.Route, method, target string, hdr http.Header, p adapter.Params, h http.HandlerFunc) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	_ = adapter.ServeRoute(rt, w, req, p, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	})
	return w
}

func rvCache(t *testing.T, rc core.RegionConfig) *core.Cache {
	t.Helper()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rvRoute(t *testing.T, c *core.Cache, opts ...core.RouteOption) *core.Route {
	t.Helper()
	rt, err := c.Route("r", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// A tag a handler adds at run time (AddTags, or a TagHeaders header) ends
// the hits of the entry it tags on the memory store once invalidated, and
// a tag header never reaches a client, from the miss or the hits.
func TestMemoryHitRuntimeTagsInvalidate(t *testing.T) {
	for _, how := range []string{"AddTags", "header"} {
		t.Run(how, func(t *testing.T) {
			c := rvCache(t, core.RegionConfig{TagHeaders: []string{"X-Tags"}})
			rt := rvRoute(t, c, core.Tags("items"))
			var version atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				if how == "AddTags" {
					core.AddTags(r.Context(), "owner:7", "extra")
				} else {
					w.Header().Set("X-Tags", "owner:7 extra")
				}
				w.Header().Set("X-Version", strconv.FormatInt(version.Load(), 10))
				fmt.Fprint(w, "v", version.Load())
			}
			p := mapParams{"id": "1"}
			for round := 0; round < 3; round++ {
				want := fmt.Sprint("v", version.Load())
				if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "MISS" || w.Body.String() != want || w.Header().Get("X-Tags") != "" {
					t.Fatalf("round %d fill: %s %q tags %q", round, xc(w), w.Body.String(), w.Header().Get("X-Tags"))
				}
				for i := 0; i < 3; i++ {
					w := rvServe(rt, "GET", "/items/1", nil, p, h)
					if xc(w) != "HIT" || w.Body.String() != want || w.Header().Get("X-Tags") != "" || w.Header().Get("X-Version") != want[1:] {
						t.Fatalf("round %d hit: %s %q tags %q version %q", round, xc(w), w.Body.String(), w.Header().Get("X-Tags"), w.Header().Get("X-Version"))
					}
				}
				version.Add(1)
				if err := c.InvalidateTags(context.Background(), "owner:7"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Under SoftInvalidation a softly invalidated entry answers once as
// STALE on the memory store (and is refreshed), never as a fresh HIT;
// a hard invalidation after it ends it.
func TestMemoryHitSoftInvalidation(t *testing.T) {
	c := rvCache(t, core.RegionConfig{SoftInvalidation: true, Stale: time.Hour})
	rt := rvRoute(t, c, core.Tags("item:{id}"))
	var version atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
	p := mapParams{"id": "1"}
	rvServe(rt, "GET", "/items/1", nil, p, h)
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "HIT" || w.Body.String() != "0" {
		t.Fatalf("hit: %s %q", xc(w), w.Body.String())
	}
	version.Add(1)
	if err := c.InvalidateTagsSoft(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	w := rvServe(rt, "GET", "/items/1", nil, p, h)
	if xc(w) != "STALE" || w.Body.String() != "0" {
		t.Fatalf("after a soft invalidation: %s %q (want STALE 0)", xc(w), w.Body.String())
	}
	// The refresh ran on the request's goroutine: the next is a hit on it.
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "HIT" || w.Body.String() != "1" {
		t.Fatalf("after the refresh: %s %q", xc(w), w.Body.String())
	}
	version.Add(1)
	if err := c.InvalidateTags(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "MISS" || w.Body.String() != "2" {
		t.Fatalf("after a hard invalidation: %s %q", xc(w), w.Body.String())
	}
}

// A tag templated on a query parameter, under CanonicalQuery: two
// spellings of one query share the entry, and invalidating the tag the
// parameter names ends its hits for both.
func TestMemoryHitQueryTagCanonicalQuery(t *testing.T) {
	c := rvCache(t, core.RegionConfig{CanonicalQuery: true})
	rt := rvRoute(t, c, core.Tags("q:{query:a}"))
	var version atomic.Int64
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, r.URL.Query().Get("a"), "/", version.Load())
	}
	p := mapParams{"id": "1"}
	if w := rvServe(rt, "GET", "/items/1?a=x%20y&b=2", nil, p, h); xc(w) != "MISS" {
		t.Fatalf("fill: %s", xc(w))
	}
	for _, target := range []string{"/items/1?b=2&a=x+y", "/items/1?a=x%20y&b=2", "/items/1?b=2&a=x%20y"} {
		if w := rvServe(rt, "GET", target, nil, p, h); xc(w) != "HIT" || w.Body.String() != "x y/0" {
			t.Fatalf("%s: %s %q", target, xc(w), w.Body.String())
		}
	}
	// Another value of a: another entry, another tag.
	if w := rvServe(rt, "GET", "/items/1?b=2&a=z", nil, p, h); xc(w) != "MISS" || w.Body.String() != "z/0" {
		t.Fatalf("a=z: %s %q", xc(w), w.Body.String())
	}
	version.Add(1)
	if err := c.InvalidateTags(context.Background(), "q:x+y"); err != nil { // values are query-escaped
		t.Fatal(err)
	}
	if w := rvServe(rt, "GET", "/items/1?b=2&a=x+y", nil, p, h); xc(w) != "MISS" || w.Body.String() != "x y/1" {
		t.Fatalf("after the invalidation: %s %q", xc(w), w.Body.String())
	}
	if w := rvServe(rt, "GET", "/items/1?b=2&a=z", nil, p, h); xc(w) != "HIT" || w.Body.String() != "z/0" {
		t.Fatalf("a=z after another tag's invalidation: %s %q", xc(w), w.Body.String())
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d origin calls, want 3", n)
	}
}

// A HEAD answered from a GET's entry on the memory store: no body, the
// entry's Content-Length, ETag and Last-Modified; a conditional HEAD or
// GET gets 304 without Content-Length. A cold HEAD is not cached.
func TestMemoryHitHeadAndConditional(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	rt := rvRoute(t, c)
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "hello world")
	}
	p := mapParams{"id": "1"}
	if w := rvServe(rt, "HEAD", "/items/1", nil, p, h); xc(w) != "BYPASS" {
		t.Fatalf("cold HEAD: %s", xc(w))
	}
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "MISS" {
		t.Fatalf("GET: %s", xc(w))
	}
	g := rvServe(rt, "GET", "/items/1", nil, p, h)
	if xc(g) != "HIT" || g.Body.String() != "hello world" || g.Header().Get("Content-Length") != "11" || g.Header().Get("Etag") == "" || g.Header().Get("Last-Modified") == "" {
		t.Fatalf("GET hit: %s %q %v", xc(g), g.Body.String(), g.Header())
	}
	hd := rvServe(rt, "HEAD", "/items/1", nil, p, h)
	if xc(hd) != "HIT" || hd.Body.Len() != 0 || hd.Header().Get("Content-Length") != "11" || hd.Header().Get("Etag") != g.Header().Get("Etag") || hd.Header().Get("Last-Modified") != g.Header().Get("Last-Modified") || hd.Header().Get("Content-Type") != "text/plain" {
		t.Fatalf("HEAD hit: %s %q %v", xc(hd), hd.Body.String(), hd.Header())
	}
	for _, m := range []string{"GET", "HEAD"} {
		w := rvServe(rt, m, "/items/1", http.Header{"If-None-Match": {g.Header().Get("Etag")}}, p, h)
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "" || w.Header().Get("Etag") != g.Header().Get("Etag") {
			t.Fatalf("conditional %s: %d %q %v", m, w.Code, w.Body.String(), w.Header())
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d origin calls, want 2", n)
	}
}

// The entry of a response holds the headers as they went out with the
// status (at the first write): a header a handler sets or changes after
// it is neither sent nor stored, and what the cache adds (ETag, Last-Modified) is the
// entry's alone.
func TestStoredHeadersAreThoseSentWithTheStatus(t *testing.T) {
	for _, rc := range map[string]core.RegionConfig{
		"plain":    {},
		"cdn":      {CDNHeaders: true},
		"compress": {Compress: true},
	} {
		c := rvCache(t, rc)
		rt := rvRoute(t, c)
		h := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-A", "1")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, "body-") // the headers go out with the first write
			w.Header().Set("X-A", "2")
			w.Header().Set("X-B", "late")
			w.Header().Set("Etag", `"late"`)
			fmt.Fprint(w, r.URL.Path)
		}
		p := mapParams{"id": "1"}
		miss := rvServe(rt, "GET", "/items/1", nil, p, h)
		hit := rvServe(rt, "GET", "/items/1", nil, p, h)
		if xc(miss) != "MISS" || xc(hit) != "HIT" {
			t.Fatalf("%+v: %s then %s", rc, xc(miss), xc(hit))
		}
		if hit.Header().Get("X-A") != "1" || hit.Header().Get("X-B") != "" || hit.Header().Get("Etag") == `"late"` || hit.Body.String() != "body-/items/1" {
			t.Fatalf("%+v: hit %v %q", rc, hit.Header(), hit.Body.String())
		}
	}
}

// Entries filled concurrently, each response with its own number of
// headers, with and without its own ETag and Last-Modified, each replay
// their own: no entry shares a header value, a validator or a body with
// another (each entry is one allocation of its own).
func TestConcurrentFillsReplayTheirOwnHeaders(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	rt := rvRoute(t, c, core.Tags("item:{id}", "all", "odd:{id}"))
	lm := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	h := func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.URL.Path[len("/items/"):])
		for j := 0; j < id%7; j++ {
			w.Header().Add(fmt.Sprintf("X-H%d", j), fmt.Sprintf("%d-%d", id, j))
		}
		if id%3 == 0 {
			w.Header().Set("Etag", fmt.Sprintf(`"e%d"`, id))
		}
		if id%4 == 0 {
			w.Header().Set("Last-Modified", lm)
		}
		if id%5 == 0 {
			w.Header()["X-Multi"] = []string{"a" + strconv.Itoa(id), "b" + strconv.Itoa(id), "c"}
		}
		fmt.Fprintf(w, "body %d %s", id, string(make([]byte, id%13)))
	}
	const n = 60
	check := func(id int, w *httptest.ResponseRecorder, etags *sync.Map) error {
		hit := xc(w) == "HIT"
		if want := fmt.Sprintf("body %d %s", id, string(make([]byte, id%13))); w.Body.String() != want {
			return fmt.Errorf("%d: body %q", id, w.Body.String())
		}
		if got := w.Header().Get("Content-Length"); hit && got != strconv.Itoa(w.Body.Len()) {
			return fmt.Errorf("%d: Content-Length %q for %d bytes", id, got, w.Body.Len())
		}
		for j := 0; j < 7; j++ {
			got := w.Header().Get(fmt.Sprintf("X-H%d", j))
			if want := fmt.Sprintf("%d-%d", id, j); j < id%7 && got != want || j >= id%7 && got != "" {
				return fmt.Errorf("%d: X-H%d %q", id, j, got)
			}
		}
		et := w.Header().Get("Etag")
		if id%3 == 0 && et != fmt.Sprintf(`"e%d"`, id) || hit && et == "" {
			return fmt.Errorf("%d: Etag %q", id, et)
		}
		if hit {
			if prev, loaded := etags.LoadOrStore(id, et); loaded && prev != et {
				return fmt.Errorf("%d: Etag %q then %q", id, prev, et)
			}
		}
		if id%4 == 0 && w.Header().Get("Last-Modified") != lm || hit && w.Header().Get("Last-Modified") == "" {
			return fmt.Errorf("%d: Last-Modified %q", id, w.Header().Get("Last-Modified"))
		}
		if m := w.Header()["X-Multi"]; id%5 == 0 && (len(m) != 3 || m[0] != "a"+strconv.Itoa(id) || m[1] != "b"+strconv.Itoa(id)) || id%5 != 0 && m != nil {
			return fmt.Errorf("%d: X-Multi %q", id, m)
		}
		return nil
	}
	var etags sync.Map
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 4*n)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < n; i++ {
					id := (i*7 + g*13) % n
					w := rvServe(rt, "GET", fmt.Sprintf("/items/%d", id), nil, mapParams{"id": strconv.Itoa(id)}, h)
					if err := check(id, w, &etags); err != nil {
						errs <- fmt.Errorf("round %d %s: %w", round, xc(w), err)
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Every one a hit now, its own.
		for id := 0; id < n; id++ {
			w := rvServe(rt, "GET", fmt.Sprintf("/items/%d", id), nil, mapParams{"id": strconv.Itoa(id)}, h)
			if xc(w) != "HIT" {
				t.Fatalf("round %d: %d not a hit: %s", round, id, xc(w))
			}
			if err := check(id, w, &etags); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.InvalidateTags(context.Background(), "all"); err != nil {
			t.Fatal(err)
		}
		etags = sync.Map{}
	}
}

// Concurrent cold requests for a key call the origin once; when that call
// panics, each request that waited is answered without taking the
// panicking fill's recorder or entry, and the next fill (a new flight,
// with a recorder of its own) is cached as usual.
func TestColdBurstAfterPanickedFill(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	rt := rvRoute(t, c)
	var calls atomic.Int64
	release := make(chan struct{})
	var panicking atomic.Bool
	panicking.Store(true)
	h := func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		if panicking.Load() {
			w.Header().Set("X-Panic", "1")
			fmt.Fprint(w, "partial")
			panic("boom")
		}
		w.Header().Set("X-Ok", "1")
		fmt.Fprint(w, "ok")
	}
	p := mapParams{"id": "1"}
	serve := func() (w *httptest.ResponseRecorder, panicked any) {
		defer func() { panicked = recover() }()
		return rvServe(rt, "GET", "/items/1", nil, p, h), nil
	}
	const n = 8
	var wg sync.WaitGroup
	results := make(chan *httptest.ResponseRecorder, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w, v := serve(); v == nil {
				results <- w
			}
		}()
	}
	waitFor(t, "the first origin call", func() bool { return calls.Load() >= 1 })
	close(release)
	wg.Wait()
	close(results)
	for w := range results {
		if w.Header().Get("X-Panic") != "" && w.Header().Get("X-Cache") == "HIT" {
			t.Fatalf("a waiter took the panicking fill's response as a hit: %v", w.Header())
		}
	}
	panicking.Store(false)
	// The failure is shared for the failure memory; then a fill runs.
	before := calls.Load()
	waitFor(t, "a fill after the failure memory", func() bool {
		before = calls.Load()
		w, v := serve()
		return v == nil && w.Body.String() == "ok"
	})
	w, v := serve()
	if v != nil || xc(w) != "HIT" || w.Body.String() != "ok" || w.Header().Get("X-Panic") != "" || w.Header().Get("X-Ok") != "1" {
		t.Fatalf("hit after the panic: %v %s %q %v", v, xc(w), w.Body.String(), w.Header())
	}
	if d := calls.Load() - before; d != 1 {
		t.Fatalf("%d origin calls after the panic, want 1", d)
	}
}

// A handler that keeps its request's context after it returned (a
// goroutine reading it later) sees it as a plain ended or live context;
// the entry its fill stored is untouched by anything done with the
// context since.
func TestHandlerKeepingItsContext(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	rt := rvRoute(t, c)
	kept := make(chan context.Context, 4)
	h := func(w http.ResponseWriter, r *http.Request) {
		kept <- r.Context()
		fmt.Fprint(w, "v-", r.URL.Path)
	}
	for i := 0; i < 3; i++ {
		target := fmt.Sprintf("/items/%d", i)
		rvServe(rt, "GET", target, nil, mapParams{"id": strconv.Itoa(i)}, h)
	}
	close(kept)
	for ctx := range kept {
		core.AddTags(ctx, "late") // after the fill: ignored
		_ = ctx.Err()
		_, _ = ctx.Deadline()
	}
	for i := 0; i < 3; i++ {
		target := fmt.Sprintf("/items/%d", i)
		if w := rvServe(rt, "GET", target, nil, mapParams{"id": strconv.Itoa(i)}, h); xc(w) != "HIT" || w.Body.String() != "v-"+target {
			t.Fatalf("%s: %s %q", target, xc(w), w.Body.String())
		}
	}
	if err := c.InvalidateTags(context.Background(), "late"); err != nil {
		t.Fatal(err)
	}
	if w := rvServe(rt, "GET", "/items/0", nil, mapParams{"id": "0"}, h); xc(w) != "HIT" {
		t.Fatalf("a tag added after the fill ended its entry: %s", xc(w))
	}
}

// Two routes in one region with the same pattern and different tags
// share a key: each one's hit on the entry ends when a tag of the entry's
// own is invalidated. (TestRoutesSharingAKeyHonourTheirOwnTags covers the
// tags only one of them declares.)
func TestMemoryHitSharedKeyDifferentTags(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	a := rvRoute(t, c, core.Tags("a:{id}"))
	b := rvRoute(t, c, core.Tags("b:{id}"))
	var version atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
	p := mapParams{"id": "1"}
	for _, inv := range []string{"a:1", "a:1"} {
		rvServe(a, "GET", "/items/1", nil, p, h)
		if w := rvServe(b, "GET", "/items/1", nil, p, h); w.Body.String() != fmt.Sprint(version.Load()) {
			t.Fatalf("b on a's entry: %s %q", xc(w), w.Body.String())
		}
		version.Add(1)
		if err := c.InvalidateTags(context.Background(), inv); err != nil {
			t.Fatal(err)
		}
		for _, rt := range []*core.Route{a, b} {
			if w := rvServe(rt, "GET", "/items/1", nil, p, h); w.Body.String() != fmt.Sprint(version.Load()) {
				t.Fatalf("after invalidating %s: %s %q, want %d", inv, xc(w), w.Body.String(), version.Load())
			}
		}
	}
}

// Through a near cache, an L1 entry's hits reuse the counter values a
// previous hit read only while no local counter changed: an invalidation
// made here, or elsewhere once its message arrived, ends them, for an
// entry with few counters and for one with more than the near cache keeps
// references to (eight), and for a runtime tag.
func TestNearHitAfterInvalidation(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s&near_max_bytes=4MiB"
	cs := instances(t, 2, url, core.RegionConfig{})
	a, b := cs[0], cs[1]
	for _, tc := range []struct {
		name string
		tags []string
		inv  string
	}{
		{"few", []string{"f:{id}"}, "f:1"},
		{"eight", []string{"t1:{id}", "t2", "t3", "t4", "t5", "t6:{id}"}, "t6:1"},
		{"eight-static", []string{"s1:{id}", "s2", "s3", "s4", "s5", "s6"}, "s6"},
		{"runtime", []string{"g:{id}"}, "rt-owner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var version atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				core.AddTags(r.Context(), "rt-owner")
				fmt.Fprint(w, version.Load())
			}
			rta := rvRoute(t, a, core.Tags(tc.tags...))
			rtb := rvRoute(t, b, core.Tags(tc.tags...))
			p := mapParams{"id": "1"}
			target := "/items/1?case=" + tc.name
			nb := nearOf(b)
			counter := core.TagCounter(b, "r", tc.inv)
			for trial := 0; trial < 10; trial++ {
				for _, remote := range []bool{true, false} {
					waitFor(t, "B's subscription", func() bool { return nb.Stats().Coherent })
					want := fmt.Sprint(version.Load())
					rvServe(rta, "GET", target, nil, p, h)
					for i := 0; i < 3; i++ {
						if w := rvServe(rtb, "GET", target, nil, p, h); w.Body.String() != want {
							t.Fatalf("trial %d: B before the invalidation: %s %q, want %s", trial, xc(w), w.Body.String(), want)
						}
					}
					version.Add(1)
					want = fmt.Sprint(version.Load())
					if remote {
						arrived := expectMessage(t, nb, func(c string) bool { return c == counter })
						if err := a.InvalidateTags(context.Background(), tc.inv); err != nil {
							t.Fatal(err)
						}
						arrived()
					} else if err := b.InvalidateTags(context.Background(), tc.inv); err != nil {
						t.Fatal(err)
					}
					if w := rvServe(rtb, "GET", target, nil, p, h); w.Body.String() != want {
						t.Fatalf("trial %d (remote %v): B after the invalidation: %s %q, want %s", trial, remote, xc(w), w.Body.String(), want)
					}
				}
			}
		})
	}
}

// Requests racing invalidations never answer with a page older than the
// last invalidation completed before they began: on the memory store's
// hit path (with and without early refreshes, with a runtime tag) and
// through a near cache.
func TestNoStaleAnswerUnderConcurrentInvalidation(t *testing.T) {
	cases := map[string]core.RegionConfig{
		"memory":       {},
		"memory-early": {EarlyRefresh: 1e12},
	}
	if addr := testServerOptional(t, "ROUTECACHE_TEST_REDIS"); addr != "" {
		cases["near"] = core.RegionConfig{Backend: "redis://" + addr + "/0?timeout=5s&near_max_bytes=4MiB", Prefix: uniquePrefix(t)}
	}
	for name, rc := range cases {
		t.Run(name, func(t *testing.T) {
			c := rvCache(t, rc)
			if name == "near" {
				waitFor(t, "the subscription", func() bool { return nearOf(c).Stats().Coherent })
			}
			rt := rvRoute(t, c, core.Tags("item:{id}", "all"))
			var version, completed atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				core.AddTags(r.Context(), "owner")
				fmt.Fprint(w, version.Load())
			}
			tags := []string{"item:1", "all", "owner"}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var bad atomic.Value
			var served atomic.Int64
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					p := mapParams{"id": "1"}
					for {
						select {
						case <-stop:
							return
						default:
						}
						c0 := completed.Load()
						w := rvServe(rt, "GET", "/items/1", nil, p, h)
						got, err := strconv.ParseInt(w.Body.String(), 10, 64)
						if err != nil || got < c0 {
							bad.Store(fmt.Sprintf("%s %q after invalidation %d completed", xc(w), w.Body.String(), c0))
						}
						served.Add(1)
					}
				}(g)
			}
			for i := 1; i <= 300 && bad.Load() == nil; i++ {
				version.Store(int64(i))
				if err := c.InvalidateTags(context.Background(), tags[i%len(tags)]); err != nil {
					t.Fatal(err)
				}
				completed.Store(int64(i))
				n := served.Load()
				for served.Load() < n+4 && bad.Load() == nil {
					time.Sleep(50 * time.Microsecond)
				}
			}
			close(stop)
			wg.Wait()
			if v := bad.Load(); v != nil {
				t.Fatal(v)
			}
		})
	}
}

// On the memory store, requests whose keys differ only in what the hit
// path built on the stack leaves to the general one (a keyed header, a
// key past the stack buffer, TLS, a KeyFunc, a varied header) or in the
// path's spelling never answer each other, whichever fills first.
func TestMemoryHitKeysKeepRequestsApart(t *testing.T) {
	long := "/items/1?q=" + strings.Repeat("x", 300)
	type req struct {
		target string
		hdr    http.Header
		tls    bool
	}
	groups := map[string][]req{
		"forwarded": {
			{"/items/1", nil, false},
			{"/items/1", http.Header{"X-Forwarded-Host": {"a.example"}}, false},
			{"/items/1", http.Header{"X-Forwarded-Host": {"b.example"}}, false},
			{"/items/1", http.Header{"X-Forwarded-Proto": {"https"}}, false},
			{"/items/1", http.Header{"X-Real-Ip": {"10.0.0.1"}}, false},
			{"/items/1", nil, true},
		},
		"long": {
			{long, nil, false},
			{long + "y", nil, false},
			{long[:250], nil, false},
		},
		"path": {
			{"/items/a%2Fb", nil, false},
			{"/items/a/b", nil, false},
			{"/items/a%2fb", nil, false},
			{"/items/%61", nil, false},
			{"/items/a", nil, false},
		},
		"vary": {
			{"/items/1", nil, false},
			{"/items/1", http.Header{"Accept-Language": {"fr"}}, false},
			{"/items/1", http.Header{"Accept-Language": {"de"}}, false},
		},
	}
	for name, reqs := range groups {
		for first := range reqs {
			c := rvCache(t, core.RegionConfig{VaryHeaders: []string{"Accept-Language"}})
			rt := rvRoute(t, c, core.Tags("item:{id}"))
			h := func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, r.Host, "|", r.URL.RequestURI(), "|", r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"),
					r.Header.Get("X-Real-Ip"), r.Header.Get("Accept-Language"), "|", r.TLS != nil)
			}
			serve := func(q req) *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				target := q.target
				if q.tls {
					target = "https://example.com" + target
				}
				r := httptest.NewRequest("GET", target, nil)
				for k, vs := range q.hdr {
					r.Header[k] = vs
				}
				_ = adapter.ServeRoute(rt, w, r, mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
					h(w, r)
					return nil
				})
				return w
			}
			order := append([]req{reqs[first]}, reqs[:first]...)
			order = append(order, reqs[first+1:]...)
			bodies := map[string]int{}
			own := make([]string, len(order))
			for round := 0; round < 2; round++ {
				for i, q := range order {
					w := serve(q)
					if round == 0 && xc(w) != "MISS" {
						t.Fatalf("%s, %d first: request %d (%+v) answered %s: %q", name, first, i, q, xc(w), w.Body.String())
					}
					if round == 1 && xc(w) != "HIT" {
						t.Fatalf("%s, %d first: request %d (%+v) not a hit: %s", name, first, i, q, xc(w))
					}
					if round == 0 {
						bodies[w.Body.String()]++
						own[i] = w.Body.String()
					} else if bodies[w.Body.String()] != 1 || w.Body.String() != own[i] {
						t.Fatalf("%s: request %d (%+v) got %q", name, i, q, w.Body.String())
					}
				}
			}
		}
	}
}

// What the one pass over a miss's headers judges: a Content-Length past
// MaxEntryBytes (under any spelling) is not stored and says so; a
// response with trailers (declared, or set after the body) is not stored;
// one with Vary on a header the region does not key is not stored.
func TestMissHeaderVerdicts(t *testing.T) {
	cases := map[string]http.HandlerFunc{
		"content-length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2000")
			fmt.Fprint(w, strings.Repeat("x", 2000))
		},
		"content-length-lower": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["content-length"] = []string{"2000"}
			fmt.Fprint(w, strings.Repeat("x", 2000))
		},
		"trailer-declared": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			fmt.Fprint(w, "x")
			w.Header().Set("X-Sum", "1")
		},
		"trailer-late": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "x")
			w.Header().Set(http.TrailerPrefix+"X-Sum", "1")
		},
		"vary-unkeyed": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "X-Unkeyed")
			fmt.Fprint(w, "x")
		},
		"vary-lower": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["vary"] = []string{"X-Unkeyed"}
			fmt.Fprint(w, "x")
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			c := rvCache(t, core.RegionConfig{MaxEntryBytes: 1000})
			rt := rvRoute(t, c)
			var calls atomic.Int64
			hh := func(w http.ResponseWriter, r *http.Request) { calls.Add(1); h(w, r) }
			for i := 0; i < 2; i++ {
				w := rvServe(rt, "GET", "/items/1", nil, mapParams{"id": "1"}, hh)
				if xc(w) != "MISS" {
					t.Fatalf("request %d: %s (%v)", i, xc(w), w.Header())
				}
				// Known as the headers go out: Cache-Status tells why.
				if cs := w.Header().Get("Cache-Status"); name != "trailer-late" && (strings.Contains(cs, "stored") || !strings.Contains(cs, "detail=")) {
					t.Fatalf("request %d: Cache-Status %q", i, cs)
				}
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("%d origin calls, want 2", n)
			}
			if st := c.Stats()["r"]; len(st.NotStored) == 0 {
				t.Fatalf("no reason counted: %+v", st)
			}
		})
	}
}
