package core_test

import (
	"context"
	"errors"
	"fmt"
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

// Session 9 review (s9-hit: memory.Held, serveKeyed's own bypasses;
// s9-miss: the store keeping the entry's Key, the fill context without
// context.WithoutCancel, the memory fill trusting the lookup's counters).

// rv9bServe runs one request on rt with ctx, pattern "/items/:id".
func rv9bServe(ctx context.Context, rt *core.Route, method, target string, hdr http.Header, p adapter.Params, h http.HandlerFunc) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, method, target, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	_ = adapter.ServeRoute(rt, w, req, p, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	})
	return w
}

// Every request the old requestBypass (7a9d51d) sent around the cache is
// sent around it now, with the same reason, by each entry point: a route
// on its keyed path (default key), a route with a key template (the
// general path), the same with an Observer (serveKeyed handing over to
// serveGeneral), and Middleware. An entry is stored first, so a request
// that is not bypassed would be answered HIT with the stored body.
func TestReviewS9bBypassReasonsUnchanged(t *testing.T) {
	cases := []struct {
		name   string
		method string
		hdr    http.Header
		body   string
		detail string
	}{
		{"post", "POST", nil, "", "method"},
		{"delete", "DELETE", nil, "", "method"},
		{"options", "OPTIONS", nil, "", "method"},
		{"body", "GET", nil, "x", "body"},
		{"authorization", "GET", http.Header{"Authorization": {"Bearer u1"}}, "", "authorization"},
		{"authorization-empty-then-token", "GET", http.Header{"Authorization": {"", "Bearer u1"}}, "", "authorization"},
		{"proxy-authorization", "GET", http.Header{"Proxy-Authorization": {"Basic eA=="}}, "", "authorization"},
		{"cookie", "GET", http.Header{"Cookie": {"sid=u1"}}, "", "cookie"},
		{"cookie-second-line", "GET", http.Header{"Cookie": {"", "sid=u1"}}, "", "cookie"},
		{"range", "GET", http.Header{"Range": {"bytes=0-0"}}, "", "precondition"},
		{"if-range", "GET", http.Header{"If-Range": {`"x"`}}, "", "precondition"},
		{"if-match", "GET", http.Header{"If-Match": {"*"}}, "", "precondition"},
		{"if-unmodified-since", "GET", http.Header{"If-Unmodified-Since": {"Mon, 02 Jan 2006 15:04:05 GMT"}}, "", "precondition"},
		{"override", "GET", http.Header{"X-Http-Method-Override": {"DELETE"}}, "", "override"},
		{"upgrade", "GET", http.Header{"Upgrade": {"websocket"}}, "", "upgrade"},
	}
	type entry struct {
		name  string
		serve func(c *core.Cache, t *testing.T) func(method string, hdr http.Header, body string, h http.HandlerFunc) *httptest.ResponseRecorder
	}
	viaRoute := func(opts ...core.RouteOption) func(c *core.Cache, t *testing.T) func(string, http.Header, string, http.HandlerFunc) *httptest.ResponseRecorder {
		return func(c *core.Cache, t *testing.T) func(string, http.Header, string, http.HandlerFunc) *httptest.ResponseRecorder {
			rt := rvRoute(t, c, opts...)
			return func(method string, hdr http.Header, body string, h http.HandlerFunc) *httptest.ResponseRecorder {
				w, req := httptest.NewRecorder(), s9bRequest(method, hdr, body)
				_ = adapter.ServeRoute(rt, w, req, mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
					h(w, r)
					return nil
				})
				return w
			}
		}
	}
	viaMiddleware := func(c *core.Cache, t *testing.T) func(string, http.Header, string, http.HandlerFunc) *httptest.ResponseRecorder {
		mw, err := c.Middleware("r")
		if err != nil {
			t.Fatal(err)
		}
		return func(method string, hdr http.Header, body string, h http.HandlerFunc) *httptest.ResponseRecorder {
			w, req := httptest.NewRecorder(), s9bRequest(method, hdr, body)
			mw(h).ServeHTTP(w, req)
			return w
		}
	}
	entries := []entry{
		{"route-keyed", viaRoute()},
		{"route-template", viaRoute(core.Key("item:{id}"))},
		{"middleware", viaMiddleware},
	}
	for _, withObs := range []bool{false, true} {
		for _, ep := range entries {
			t.Run(fmt.Sprintf("%s/observer=%v", ep.name, withObs), func(t *testing.T) {
				cfg := core.Config{Regions: map[string]core.RegionConfig{"r": {}}, Logger: quietLogger()}
				if withObs {
					cfg.Observer = core.NopObserver{}
				}
				c, err := core.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				serve := ep.serve(c, t)
				var runs atomic.Int64
				h := func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprintf(w, "run %d", runs.Add(1))
				}
				if w := serve("GET", nil, "", h); xc(w) != "MISS" {
					t.Fatalf("fill: %s", xc(w))
				}
				if w := serve("GET", nil, "", h); xc(w) != "HIT" || w.Body.String() != "run 1" {
					t.Fatalf("hit: %s %q", xc(w), w.Body.String())
				}
				for _, tc := range cases {
					before := runs.Load()
					w := serve(tc.method, tc.hdr, tc.body, h)
					want := "routecache; fwd=bypass; detail=" + tc.detail
					if xc(w) != "BYPASS" || w.Header().Get("Cache-Status") != want || runs.Load() != before+1 {
						t.Errorf("%s: X-Cache %q Cache-Status %q body %q, want BYPASS %q from the handler", tc.name, xc(w), w.Header().Get("Cache-Status"), w.Body.String(), want)
					}
				}
				c.Close()
				before := runs.Load()
				if w := serve("GET", nil, "", h); xc(w) != "BYPASS" || !strings.HasSuffix(w.Header().Get("Cache-Status"), "detail=closed") || runs.Load() != before+1 {
					t.Errorf("closed: X-Cache %q Cache-Status %q", xc(w), w.Header().Get("Cache-Status"))
				}
			})
		}
	}
}

// A route's Skip runs before anything else on the keyed path, as in
// serve before: a skipped request is never answered from the store.
func TestReviewS9bSkipOnKeyedPath(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	skip := atomic.Bool{}
	rt := rvRoute(t, c, core.SkipIf(func(*http.Request) bool { return skip.Load() }))
	var runs atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "run %d", runs.Add(1)) }
	p := mapParams{"id": "1"}
	rvServe(rt, "GET", "/items/1", nil, p, h)
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "HIT" {
		t.Fatalf("hit: %s", xc(w))
	}
	skip.Store(true)
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "BYPASS" || w.Body.String() != "run 2" || !strings.HasSuffix(w.Header().Get("Cache-Status"), "detail=skip") {
		t.Fatalf("skipped: %s %q %q", xc(w), w.Body.String(), w.Header().Get("Cache-Status"))
	}
}

// An invalidation that completes while a fill's producer runs leaves the
// entry unusable, whatever it invalidates: a tag never invalidated
// before (its counter created now), a tag invalidated before (bumped),
// the key, the region, a runtime tag the producer adds. The next request
// misses and answers the new version.
func TestReviewS9bInvalidationDuringFillNeverServed(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"first-tag", "bumped-tag", "key", "region", "runtime-tag", "runtime-tag-first"} {
		t.Run(how, func(t *testing.T) {
			c := rvCache(t, core.RegionConfig{})
			rt := rvRoute(t, c, core.Tags("items"))
			if how == "bumped-tag" {
				_ = c.InvalidateTags(ctx, "items")
			}
			if how == "runtime-tag" {
				_ = c.InvalidateTags(ctx, "owner:7")
			}
			var version atomic.Int64
			started, release := make(chan struct{}), make(chan struct{})
			var block atomic.Bool
			h := func(w http.ResponseWriter, r *http.Request) {
				v := version.Load() // read before the invalidation
				if strings.HasPrefix(how, "runtime-tag") {
					core.AddTags(r.Context(), "owner:7")
				}
				if block.Load() {
					close(started)
					<-release
				}
				fmt.Fprint(w, "v", v)
			}
			p := mapParams{"id": "1"}
			block.Store(true)
			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- rvServe(rt, "GET", "/items/1", nil, p, h) }()
			<-started
			version.Add(1)
			var err error
			switch how {
			case "first-tag", "bumped-tag":
				err = c.InvalidateTags(ctx, "items")
			case "key":
				err = c.InvalidateKey(ctx, "r", "/items/1")
			case "region":
				err = c.InvalidateRegion(ctx, "r")
			default:
				err = c.InvalidateTags(ctx, "owner:7")
			}
			if err != nil {
				t.Fatal(err)
			}
			block.Store(false)
			close(release)
			if w := <-done; w.Body.String() != "v0" {
				t.Fatalf("the fill answered %q", w.Body.String())
			}
			for i := 0; i < 2; i++ {
				if w := rvServe(rt, "GET", "/items/1", nil, p, h); w.Body.String() != "v1" {
					t.Fatalf("request %d after the invalidation completed: %s %q, want v1", i, xc(w), w.Body.String())
				}
			}
		})
	}
}

// A caller that looked up after an invalidation completed, and joined
// the flight of a fill whose producer started before it, is not handed
// that fill's response: on the memory store the fill's entry carries the
// counter values the leader's lookup read.
func TestReviewS9bWaiterAfterInvalidationNotHandedOlderFill(t *testing.T) {
	ctx := context.Background()
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first-invalidation=%v", first), func(t *testing.T) {
			c := rvCache(t, core.RegionConfig{})
			rt := rvRoute(t, c, core.Tags("items"))
			if !first {
				_ = c.InvalidateTags(ctx, "items")
			}
			var version atomic.Int64
			var leaderOnce sync.Once
			started, release := make(chan struct{}), make(chan struct{})
			h := func(w http.ResponseWriter, r *http.Request) {
				v := version.Load()
				leader := false
				leaderOnce.Do(func() { leader = true })
				if leader {
					close(started)
					<-release
				}
				fmt.Fprint(w, "v", v)
			}
			p := mapParams{"id": "1"}
			lw := make(chan *httptest.ResponseRecorder)
			go func() { lw <- rvServe(rt, "GET", "/items/1", nil, p, h) }()
			<-started
			version.Add(1)
			if err := c.InvalidateTags(ctx, "items"); err != nil {
				t.Fatal(err)
			}
			ww := make(chan *httptest.ResponseRecorder)
			go func() { ww <- rvServe(rt, "GET", "/items/1", nil, p, h) }()
			waitUntil(t, "the second request waits on the flight", func() bool { return flightWaiters() == 1 })
			close(release)
			if w := <-lw; w.Body.String() != "v0" {
				t.Fatalf("leader: %q", w.Body.String())
			}
			if w := <-ww; w.Body.String() != "v1" {
				t.Fatalf("the caller that looked up after the invalidation answered %s %q, want v1", xc(w), w.Body.String())
			}
		})
	}
}

// Entries stay independent when the store keeps their own Key without a
// copy: many keys filled through the pooled request state (short keys on
// the stack, long ones not; a Prefix, whose storage key is not the
// canonical key; Compress, whose gzip entry has a key of its own), each
// answered with its own body afterwards, again and again.
func TestReviewS9bOwnedKeysIndependent(t *testing.T) {
	for _, rc := range []core.RegionConfig{{}, {Prefix: "ns"}, {Compress: true}} {
		t.Run(fmt.Sprintf("prefix=%q/compress=%v", rc.Prefix, rc.Compress), func(t *testing.T) {
			c := rvCache(t, rc)
			rt := rvRoute(t, c)
			h := func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				fmt.Fprint(w, "body of ", r.URL.RequestURI(), strings.Repeat(".", 300))
			}
			targets := make([]string, 0, 300)
			for i := 0; i < 300; i++ {
				pad := strings.Repeat("x", (i*37)%700) // some keys past the stack buffer
				targets = append(targets, fmt.Sprintf("/items/%d?q=%s", i, pad))
			}
			hdrs := []http.Header{nil, {"Accept-Encoding": {"gzip"}}}
			for _, tg := range targets {
				rvServe(rt, "GET", tg, nil, mapParams{"id": "x"}, h)
				rvServe(rt, "GET", tg, hdrs[1], mapParams{"id": "x"}, h)
			}
			for round := 0; round < 2; round++ {
				for _, tg := range targets {
					w := rvServe(rt, "GET", tg, nil, mapParams{"id": "x"}, h)
					if want := "body of " + tg + strings.Repeat(".", 300); w.Body.String() != want || xc(w) != "HIT" {
						t.Fatalf("round %d %s: %s %.60q", round, tg[:12], xc(w), w.Body.String())
					}
				}
			}
		})
	}
}

// The fill's context, now hiding package context's cancel key instead of
// being made by context.WithoutCancel, behaves as
// context.WithTimeout(context.WithoutCancel(req), FillTimeout) for every
// observation a handler can make, before and after the client goes away,
// and after the fill ends.
func TestReviewS9bFillContextAsWithoutCancel(t *testing.T) {
	type ctxKey struct{}
	cause := errors.New("client gone")
	c := rvCache(t, core.RegionConfig{FillTimeout: time.Hour})
	rt := rvRoute(t, c)
	reqCtx, cancelReq := context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "v"))
	type obs struct {
		err, cause, childErr, childCause, grandCause error
		val                                          any
		afterRan                                     bool
		hasDeadline                                  bool
		deadlineIn                                   time.Duration
	}
	observe := func(ctx, child, grand context.Context, ran *atomic.Bool) obs {
		dl, ok := ctx.Deadline()
		return obs{err: ctx.Err(), cause: context.Cause(ctx), childErr: child.Err(), childCause: context.Cause(child),
			grandCause: context.Cause(grand), val: ctx.Value(ctxKey{}), afterRan: ran.Load(), hasDeadline: ok,
			deadlineIn: time.Until(dl).Round(time.Hour)}
	}
	// The reference: what 7a9d51d gave the handler.
	ref := func() (before, after obs, ended obs) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), time.Hour)
		child, cc := context.WithCancel(ctx)
		defer cc()
		grand, gc := context.WithTimeoutCause(child, time.Hour, errors.New("grand"))
		defer gc()
		var ran atomic.Bool
		afterDone := make(chan struct{})
		context.AfterFunc(ctx, func() { ran.Store(true); close(afterDone) })
		before = observe(ctx, child, grand, &ran)
		cancelReq(cause)
		after = observe(ctx, child, grand, &ran)
		cancel()
		<-afterDone
		<-grand.Done()
		ended = observe(ctx, child, grand, &ran)
		return
	}
	wantBefore, wantAfter, wantEnded := ref()
	// The fill: a fresh client context, cancelled with a cause while the
	// handler runs.
	reqCtx, cancelReq = context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "v"))
	var gotBefore, gotAfter obs
	var fillCtx, child, grand context.Context
	var ran atomic.Bool
	afterDone := make(chan struct{})
	var stopChild func()
	h := func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var cc, gc context.CancelFunc
		child, cc = context.WithCancel(ctx)
		grand, gc = context.WithTimeoutCause(child, time.Hour, errors.New("grand"))
		stopChild = func() { cc(); gc() }
		context.AfterFunc(ctx, func() { ran.Store(true); close(afterDone) })
		gotBefore = observe(ctx, child, grand, &ran)
		cancelReq(cause)
		gotAfter = observe(ctx, child, grand, &ran)
		fillCtx = ctx
		fmt.Fprint(w, "ok")
	}
	rv9bServe(reqCtx, rt, "GET", "/items/1", nil, mapParams{"id": "1"}, h)
	defer stopChild()
	<-afterDone
	<-grand.Done()
	gotEnded := observe(fillCtx, child, grand, &ran)
	for _, x := range []struct {
		when      string
		got, want obs
	}{{"before the client went away", gotBefore, wantBefore}, {"after the client went away", gotAfter, wantAfter}, {"after the fill ended", gotEnded, wantEnded}} {
		if x.got != x.want {
			t.Errorf("%s:\n got %+v\nwant %+v", x.when, x.got, x.want)
		}
	}
}

// The first invalidation ever of anything an entry depends on (its
// counter created only then, after the entry was stored with none of
// them existing) ends its hits at once: a route tag, the key, the
// region, a runtime tag. The Held resolved with no counter trusts
// nothing once a counter was created.
func TestReviewS9bFirstInvalidationAfterStore(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"tag", "key", "region", "runtime-tag", "unrelated-then-tag"} {
		t.Run(how, func(t *testing.T) {
			c := rvCache(t, core.RegionConfig{})
			rt := rvRoute(t, c, core.Tags("items"))
			var version atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				core.AddTags(r.Context(), "owner:7")
				fmt.Fprint(w, "v", version.Load())
			}
			p := mapParams{"id": "1"}
			rvServe(rt, "GET", "/items/1", nil, p, h)
			if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "HIT" || w.Body.String() != "v0" {
				t.Fatalf("hit: %s %q", xc(w), w.Body.String())
			}
			if how == "unrelated-then-tag" {
				// A counter created for something else: the entry stays.
				_ = c.InvalidateTags(ctx, "unrelated")
				if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "HIT" {
					t.Fatalf("after an unrelated invalidation: %s", xc(w))
				}
			}
			version.Add(1)
			var err error
			switch how {
			case "tag", "unrelated-then-tag":
				err = c.InvalidateTags(ctx, "items")
			case "key":
				err = c.InvalidateKey(ctx, "r", "/items/1")
			case "region":
				err = c.InvalidateRegion(ctx, "r")
			case "runtime-tag":
				err = c.InvalidateTags(ctx, "owner:7")
			}
			if err != nil {
				t.Fatal(err)
			}
			if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "MISS" || w.Body.String() != "v1" {
				t.Fatalf("after the first invalidation: %s %q, want MISS v1", xc(w), w.Body.String())
			}
		})
	}
}

// A memoized value computed while an invalidation of its tag completed
// (its first, or a later one) is never returned afterwards, and a caller
// that waited on that computation after the invalidation completed gets
// a value computed after it: the memory fill trusting the lookup's
// counters holds for Load as for routes. The client's context ending
// while the function runs does not end the function's.
func TestReviewS9bLoadInvalidatedDuringFill(t *testing.T) {
	ctx := context.Background()
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first-invalidation=%v", first), func(t *testing.T) {
			c := rvCache(t, core.RegionConfig{})
			if !first {
				_ = c.InvalidateTags(ctx, "items")
			}
			var version atomic.Int64
			var leaderOnce sync.Once
			started, release := make(chan struct{}), make(chan struct{})
			var fnErr atomic.Value
			fn := func(fctx context.Context) (string, error) {
				v := version.Load()
				leader := false
				leaderOnce.Do(func() { leader = true })
				if leader {
					close(started)
					<-release
					if err := fctx.Err(); err != nil {
						fnErr.Store(err)
					}
				}
				return fmt.Sprint("v", v), nil
			}
			clientCtx, cancelClient := context.WithCancel(ctx)
			lres := make(chan string)
			go func() {
				v, _ := core.Load(clientCtx, c, "r", "item-1", fn, core.WithTags("items"))
				lres <- v
			}()
			<-started
			version.Add(1)
			if err := c.InvalidateTags(ctx, "items"); err != nil {
				t.Fatal(err)
			}
			wres := make(chan string)
			go func() {
				v, err := core.Load(ctx, c, "r", "item-1", fn, core.WithTags("items"))
				if err != nil {
					v = err.Error()
				}
				wres <- v
			}()
			waitUntil(t, "the second Load waits on the flight", func() bool { return flightWaiters() == 1 })
			cancelClient()
			close(release)
			<-lres
			if err, _ := fnErr.Load().(error); err != nil {
				t.Fatalf("the function's context ended with its caller's: %v", err)
			}
			if v := <-wres; v != "v1" {
				t.Fatalf("the Load that looked up after the invalidation got %q, want v1", v)
			}
			for i := 0; i < 2; i++ {
				if v, err := core.Load(ctx, c, "r", "item-1", fn, core.WithTags("items")); err != nil || v != "v1" {
					t.Fatalf("Load %d after the invalidation: %q %v, want v1", i, v, err)
				}
			}
		})
	}
}

// A HEAD request finding no entry runs uncached (BypassHead) on the
// keyed path (serveAbsent) and through Middleware, and stores nothing:
// the GET after it misses.
func TestReviewS9bHeadOnEmptyStore(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	rt := rvRoute(t, c)
	mw, err := c.Middleware("r")
	if err != nil {
		t.Fatal(err)
	}
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "page ", r.URL.Path) }
	p := mapParams{"id": "1"}
	if w := rvServe(rt, "HEAD", "/items/1", nil, p, h); xc(w) != "BYPASS" || !strings.HasSuffix(w.Header().Get("Cache-Status"), "detail=head-miss") {
		t.Fatalf("route HEAD: %s %q", xc(w), w.Header().Get("Cache-Status"))
	}
	if w := rvServe(rt, "GET", "/items/1", nil, p, h); xc(w) != "MISS" {
		t.Fatalf("route GET after HEAD: %s", xc(w))
	}
	w := httptest.NewRecorder()
	mw(http.HandlerFunc(h)).ServeHTTP(w, httptest.NewRequest("HEAD", "/m/1", nil))
	if xc(w) != "BYPASS" || !strings.HasSuffix(w.Header().Get("Cache-Status"), "detail=head-miss") {
		t.Fatalf("middleware HEAD: %s %q", xc(w), w.Header().Get("Cache-Status"))
	}
	w = httptest.NewRecorder()
	mw(http.HandlerFunc(h)).ServeHTTP(w, httptest.NewRequest("GET", "/m/1", nil))
	if xc(w) != "MISS" {
		t.Fatalf("middleware GET after HEAD: %s", xc(w))
	}
}

// s9bRequest is a request for /items/1 with hdr set and body, if any.
func s9bRequest(method string, hdr http.Header, body string) *http.Request {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, "/items/1", strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, "/items/1", nil)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	return req
}
