package cachetest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// ---------------------------------------------------------------------------
// Runtime tags: core.AddTags from the handler or a memoized function, and
// RegionConfig.TagHeaders.

func (s *suite) runtimeTags(t *testing.T) {
	t.Run("AddTags", s.addTags)
	t.Run("HeaderTags", s.headerTags)
	t.Run("ListPage", s.listPageTags)
	t.Run("InvalidatedDuringFill", s.tagsInvalidatedDuringFill)
	t.Run("Memoize", s.memoizeAddTags)
	t.Run("MaxTags", s.maxTags)
}

// taggedItem answers "/items/:id" tagged item:<id> at run time.
func taggedItem(calls *counter) Handler {
	return func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := calls.inc()
		core.AddTags(r.Context(), "item:"+p("id"))
		text(w, fmt.Sprintf("item %s #%d", p("id"), n))
	}
}

func (s *suite) addTags(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"r": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/items/:id", Cache: Cached("r"), Handler: taggedItem(&calls)},
	}})
	e.expect(e.get("/items/1"), 200, "MISS", "item 1 #1")
	e.expect(e.get("/items/1"), 200, "HIT", "item 1 #1")
	e.expect(e.get("/items/2"), 200, "MISS", "item 2 #2")
	if err := e.rc.InvalidateTags(bg(), "item:1"); err != nil {
		t.Fatal(err)
	}
	e.expect(e.get("/items/1"), 200, "MISS", "item 1 #3")
	e.expect(e.get("/items/1"), 200, "HIT", "item 1 #3")
	e.expect(e.get("/items/2"), 200, "HIT", "item 2 #2")
	// Outside a fill AddTags does nothing.
	core.AddTags(bg(), "item:1")
	core.AddTags(context.TODO())
	expectCalls(t, &calls, 3)
}

func (s *suite) headerTags(t *testing.T) {
	var calls counter
	tagged := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := calls.inc()
		id := p("id")
		w.Header().Set("Surrogate-Key", "item:"+id+"  shop")
		w.Header().Add("Cache-Tag", "color:red,size:"+id)
		text(w, fmt.Sprintf("item %s #%d", id, n))
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {TagHeaders: []string{"surrogate-key", "Cache-Tag"}}}, App{Routes: []Route{
		{Method: "GET", Path: "/items/:id", Cache: Cached("r"), Handler: tagged},
	}})
	noTagHeaders := func(r resp) {
		t.Helper()
		if v := r.Header.Values("Surrogate-Key"); len(v) > 0 {
			t.Fatalf("Surrogate-Key %q reached the client (%v)", v, r)
		}
		if v := r.Header.Values("Cache-Tag"); len(v) > 0 {
			t.Fatalf("Cache-Tag %q reached the client (%v)", v, r)
		}
	}
	for _, tag := range []string{"item:1", "shop", "color:red", "size:1"} {
		r := e.get("/items/1")
		if r.cache() != "MISS" {
			t.Fatalf("before invalidating %q: %v, want a MISS", tag, r)
		}
		noTagHeaders(r)
		r = e.get("/items/1")
		e.expect(r, 200, "HIT", r.Body)
		noTagHeaders(r)
		if err := e.rc.InvalidateTags(bg(), tag); err != nil {
			t.Fatal(err)
		}
	}
	r := e.get("/items/1")
	e.expect(r, 200, "MISS", "item 1 #5")
	noTagHeaders(r)
	// A tag another item does not carry leaves it alone.
	e.expect(e.get("/items/2"), 200, "MISS", "item 2 #6")
	if err := e.rc.InvalidateTags(bg(), "size:1"); err != nil {
		t.Fatal(err)
	}
	e.expect(e.get("/items/2"), 200, "HIT", "item 2 #6")
}

// A list page tagged per item it shows: invalidating one item's tag drops
// the list, as a PUT of that item would.
func (s *suite) listPageTags(t *testing.T) {
	var calls counter
	list := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := calls.inc()
		ids := strings.Split(r.URL.Query().Get("ids"), ",")
		for _, id := range ids {
			core.AddTags(r.Context(), "article:"+id)
		}
		text(w, fmt.Sprintf("list %v #%d", ids, n))
	}
	ok := func(w http.ResponseWriter, r *http.Request, _ func(string) string) { text(w, "done") }
	e := s.setup(t, map[string]core.RegionConfig{"lists": {}}, App{Routes: []Route{
		{Method: "GET", Path: "/lists/:name", Cache: Cached("lists"), Handler: list},
		{Method: "PUT", Path: "/articles/:id", Invalidate: []core.InvalidateOption{core.Tags("article:{id}")}, Handler: ok},
	}})
	e.expect(e.get("/lists/a?ids=41,42"), 200, "MISS", "list [41 42] #1")
	e.expect(e.get("/lists/b?ids=43"), 200, "MISS", "list [43] #2")
	e.expect(e.get("/lists/a?ids=41,42"), 200, "HIT", "list [41 42] #1")
	e.expect(e.do(http.MethodPut, "/articles/42"), 200, "", "done")
	e.expect(e.get("/lists/a?ids=41,42"), 200, "MISS", "list [41 42] #3")
	e.expect(e.get("/lists/b?ids=43"), 200, "HIT", "list [43] #2")
}

// An invalidation of a runtime tag while the handler runs, before or after
// the handler names the tag, leaves the entry unstored: the client still
// gets its response, the next request misses.
func (s *suite) tagsInvalidatedDuringFill(t *testing.T) {
	var calls counter
	entered, release := make(chan struct{}), make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := calls.inc()
		switch p("how") {
		case "add":
			core.AddTags(r.Context(), "slow:1")
			entered <- struct{}{}
			<-release
		case "header":
			entered <- struct{}{}
			<-release
			w.Header().Set("Surrogate-Key", "slow:1")
		}
		text(w, fmt.Sprintf("%s #%d", p("how"), n))
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {TagHeaders: []string{"Surrogate-Key"}}}, App{Routes: []Route{
		{Method: "GET", Path: "/slow/:how", Cache: Cached("r"), Handler: slow},
	}})
	for i, how := range []string{"add", "header"} {
		target := "/slow/" + how
		done := make(chan resp, 1)
		go func() { done <- e.get(target) }()
		<-entered
		if err := e.rc.InvalidateTags(bg(), "slow:1"); err != nil {
			t.Fatal(err)
		}
		release <- struct{}{}
		r := <-done
		e.expect(r, 200, "MISS", fmt.Sprintf("%s #%d", how, 2*i+1))
		if got := e.stats("r").NotStored[core.NotStoredInvalidated]; got != uint64(i+1) {
			t.Fatalf("%s: NotStored[%s] = %d, want %d", how, core.NotStoredInvalidated, got, i+1)
		}
		// Not stored: the next request runs the handler (and stores).
		go func() { <-entered; release <- struct{}{} }()
		e.expect(e.get(target), 200, "MISS", fmt.Sprintf("%s #%d", how, 2*i+2))
		e.expect(e.get(target), 200, "HIT", fmt.Sprintf("%s #%d", how, 2*i+2))
		if r := e.get(target); r.Header.Get("Surrogate-Key") != "" {
			t.Fatalf("Surrogate-Key reached the client: %v", r)
		}
	}
}

// A memoized function adds tags through its context.
func (s *suite) memoizeAddTags(t *testing.T) {
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"m": {}}, App{})
	entered, release := make(chan struct{}), make(chan struct{})
	var block atomic.Bool
	fn, err := core.Memoize(e.rc, "m", func(id string) string { return "user:" + id }, func(ctx context.Context, id string) (string, error) {
		n := calls.inc()
		core.AddTags(ctx, "team:"+id)
		if block.Load() {
			entered <- struct{}{}
			<-release
		}
		return fmt.Sprintf("user %s #%d", id, n), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(id, want string) {
		t.Helper()
		v, err := fn(bg(), id)
		if err != nil || v != want {
			t.Fatalf("memoized %s = %q, %v; want %q", id, v, err, want)
		}
	}
	get("1", "user 1 #1")
	get("1", "user 1 #1")
	if err := e.rc.InvalidateTags(bg(), "team:1"); err != nil {
		t.Fatal(err)
	}
	get("1", "user 1 #2")
	get("1", "user 1 #2")
	// Invalidated during the run: the caller gets the value, nothing is
	// stored.
	if err := e.rc.InvalidateTags(bg(), "team:1"); err != nil {
		t.Fatal(err)
	}
	block.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); get("1", "user 1 #3") }()
	<-entered
	if err := e.rc.InvalidateTags(bg(), "team:1"); err != nil {
		t.Fatal(err)
	}
	release <- struct{}{}
	<-done
	block.Store(false)
	get("1", "user 1 #4")
	get("1", "user 1 #4")
	if got := e.stats("m").NotStored[core.NotStoredInvalidated]; got != 1 {
		t.Fatalf("NotStored[%s] = %d, want 1", core.NotStoredInvalidated, got)
	}
}

// More runtime tags than MaxTags: not stored, never truncated. Invalid
// tags are ignored and counted.
func (s *suite) maxTags(t *testing.T) {
	var calls counter
	h := func(w http.ResponseWriter, r *http.Request, p func(string) string) {
		n := calls.inc()
		for i := 0; i < 3; i++ {
			core.AddTags(r.Context(), fmt.Sprintf("t%d", i))
		}
		w.Header().Set("Surrogate-Key", p("extra"))
		core.AddTags(r.Context(), "", strings.Repeat("x", core.MaxTagBytes+1))
		text(w, fmt.Sprintf("#%d", n))
	}
	e := s.setup(t, map[string]core.RegionConfig{"r": {MaxTags: 3, TagHeaders: []string{"Surrogate-Key"}}}, App{Routes: []Route{
		{Method: "GET", Path: "/t/:extra", Cache: Cached("r"), Handler: h},
	}})
	// Three distinct tags (the header repeats one): stored.
	e.expect(e.get("/t/t1"), 200, "MISS", "#1")
	e.expect(e.get("/t/t1"), 200, "HIT", "#1")
	// A fourth: not stored, and the miss says why (the tags were all
	// added before the headers went out).
	r := e.get("/t/t3")
	e.expect(r, 200, "MISS", "#2")
	if cs := r.Header.Get("Cache-Status"); !strings.Contains(cs, "detail="+string(core.NotStoredTooManyTags)) {
		t.Fatalf("miss over MaxTags: Cache-Status %q, want detail=%s", cs, core.NotStoredTooManyTags)
	}
	e.expect(e.get("/t/t3"), 200, "MISS", "#3")
	st := e.stats("r")
	if st.NotStored[core.NotStoredTooManyTags] != 2 || st.Stores != 1 {
		t.Fatalf("NotStored %v, Stores %d; want 2 %q and 1 store", st.NotStored, st.Stores, core.NotStoredTooManyTags)
	}
	if st.InvalidTags != 6 {
		t.Fatalf("InvalidTags %d, want 6 (an empty and a too long tag per fill)", st.InvalidTags)
	}
}
