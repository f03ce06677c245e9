package core_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Tests of memoization (Load, Memoize). Behaviour is asserted by counting
// origin calls and Stats; no test asserts a duration. Waits are bounded
// polling loops.

// memoBackendURLs lists the backends every memoization rule is checked on.
// Remote ones resolve inside their subtest, so a missing server skips only
// that subtest (and fails it under CI=true).
var memoBackendURLs = []struct {
	name string
	url  func(t testing.TB) string
}{
	{"memory", func(testing.TB) string { return "" }},
	{"redis", func(t testing.TB) string {
		return "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s"
	}},
	{"redis-near", func(t testing.TB) string {
		return "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s&near_max_bytes=1MiB"
	}},
	{"memcache", func(t testing.TB) string {
		return "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=5s"
	}},
}

// eachMemoBackend runs f once per backend, on a fresh Cache with one
// region "articles" (rc applied) under a unique prefix.
func eachMemoBackend(t *testing.T, rc core.RegionConfig, f func(t *testing.T, c *core.Cache)) {
	for _, b := range memoBackendURLs {
		t.Run(b.name, func(t *testing.T) {
			cfg := rc
			cfg.Backend = b.url(t)
			cfg.Prefix = uniquePrefix(t)
			f(t, memoCache(t, cfg))
		})
	}
}

func memoCache(t testing.TB, rc core.RegionConfig) *core.Cache {
	t.Helper()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": rc}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// memoPoll polls cond (bounded: about 10 s) and fails with msg if it never holds.
func memoPoll(t testing.TB, msg string, cond func() bool) {
	t.Helper()
	for i := 0; i < 4000; i++ {
		if cond() {
			return
		}
		if i < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(2500 * time.Microsecond)
		}
	}
	t.Fatalf("timed out waiting: %s", msg)
}

type article struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// 50 concurrent callers over 5 cold keys: the function runs once per key;
// the 45 others wait for those runs and get their values.
func TestMemoizeOneOriginCallPerKey(t *testing.T) {
	eachMemoBackend(t, core.RegionConfig{}, func(t *testing.T, c *core.Cache) {
		const keys, callers = 5, 50
		var calls [keys]atomic.Int64
		release := make(chan struct{})
		get, err := core.Memoize(c, "articles", func(id int) string { return "article:" + strconv.Itoa(id) },
			func(ctx context.Context, id int) (article, error) {
				calls[id].Add(1)
				<-release
				return article{ID: id, Title: "title " + strconv.Itoa(id)}, nil
			}, core.WithKeyTags(func(key string) []string { return []string{key} }))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		got := make([]article, callers)
		errs := make([]error, callers)
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				got[i], errs[i] = get(context.Background(), i%keys)
			}(i)
		}
		// Every key's fill is running and holds its 9 other callers.
		for id := 0; id < keys; id++ {
			key := "article:" + strconv.Itoa(id)
			memoPoll(t, "waiters of "+key, func() bool { return core.MemoWaiters(c, "articles", key) == callers/keys-1 })
		}
		close(release)
		wg.Wait()
		for i := range got {
			if errs[i] != nil || got[i].ID != i%keys || got[i].Title != "title "+strconv.Itoa(i%keys) {
				t.Fatalf("caller %d: %+v, %v", i, got[i], errs[i])
			}
		}
		for id := range calls {
			if n := calls[id].Load(); n != 1 {
				t.Errorf("key %d: %d origin calls, want 1", id, n)
			}
		}
		st := c.Stats()["articles"]
		if st.Misses != keys || st.Coalesced != callers-keys || st.Hits != callers-keys || st.Stores != keys {
			t.Errorf("stats: misses %d coalesced %d hits %d stores %d; want %d %d %d %d",
				st.Misses, st.Coalesced, st.Hits, st.Stores, keys, callers-keys, callers-keys, keys)
		}
		// Warm: a hit, no origin call.
		if a, err := get(context.Background(), 3); err != nil || a.ID != 3 || calls[3].Load() != 1 {
			t.Fatalf("warm call: %+v %v, calls %d", a, err, calls[3].Load())
		}
	})
}

// A route tagged "article:{id}" and a memoized repository method tagged
// "article:42" are invalidated by one InvalidateTags.
func TestMemoizeTagsSharedWithRoutes(t *testing.T) {
	eachMemoBackend(t, core.RegionConfig{}, func(t *testing.T, c *core.Cache) {
		rt, err := c.Route("articles", core.Tags("article:{id}"))
		if err != nil {
			t.Fatal(err)
		}
		var routeCalls, repoCalls atomic.Int64
		handler := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "page %d", routeCalls.Add(1)) }
		repo, err := core.Memoize(c, "articles", func(id int) string { return "article:" + strconv.Itoa(id) },
			func(ctx context.Context, id int) (string, error) {
				return fmt.Sprintf("row %d v%d", id, repoCalls.Add(1)), nil
			}, core.WithKeyTags(func(key string) []string { return []string{key, "articles"} }))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		serve := func(id string) *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/articles/"+id, nil)
			_ = adapter.ServeRoute(rt, w, req, mapParams{"id": id}, "/articles/:id", func(w http.ResponseWriter, r *http.Request) error {
				handler(w, r)
				return nil
			})
			return w
		}
		mustRepo := func(id int, want string) {
			t.Helper()
			v, err := repo(ctx, id)
			if err != nil || v != want {
				t.Fatalf("repo(%d) = %q, %v; want %q", id, v, err, want)
			}
		}
		if w := serve("42"); memoXCache(w) != "MISS" {
			t.Fatalf("first GET: %s", memoXCache(w))
		}
		if w := serve("42"); memoXCache(w) != "HIT" || w.Body.String() != "page 1" {
			t.Fatalf("second GET: %s %q", memoXCache(w), w.Body.String())
		}
		mustRepo(42, "row 42 v1")
		mustRepo(42, "row 42 v1")
		mustRepo(43, "row 43 v2")

		if err := c.InvalidateTags(ctx, "article:42"); err != nil {
			t.Fatal(err)
		}
		if w := serve("42"); memoXCache(w) != "MISS" || w.Body.String() != "page 2" {
			t.Fatalf("GET after invalidation: %s %q", memoXCache(w), w.Body.String())
		}
		mustRepo(42, "row 42 v3") // recomputed
		mustRepo(42, "row 42 v3") // and cached again
		mustRepo(43, "row 43 v2") // another tag: untouched
		if repoCalls.Load() != 3 || routeCalls.Load() != 2 {
			t.Fatalf("origin calls: repo %d route %d, want 3 and 2", repoCalls.Load(), routeCalls.Load())
		}
	})
}

// InvalidateKey reaches a memoized key; a route whose Key template expands
// to the same text shares the key counter, never the entry.
func TestMemoizeInvalidateKey(t *testing.T) {
	eachMemoBackend(t, core.RegionConfig{}, func(t *testing.T, c *core.Cache) {
		ctx := context.Background()
		var calls atomic.Int64
		load := func(key string) string {
			t.Helper()
			v, err := core.Load(ctx, c, "articles", key, func(context.Context) (string, error) {
				return fmt.Sprintf("memo %s v%d", key, calls.Add(1)), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		rt, err := c.Route("articles", core.Key("article:{id}"))
		if err != nil {
			t.Fatal(err)
		}
		serve := func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/articles/42", nil)
			_ = adapter.ServeRoute(rt, w, req, mapParams{"id": "42"}, "/articles/:id", func(w http.ResponseWriter, r *http.Request) error {
				fmt.Fprint(w, "route body")
				return nil
			})
			return w
		}
		if v := load("article:42"); v != "memo article:42 v1" {
			t.Fatal(v)
		}
		if w := serve(); memoXCache(w) != "MISS" {
			t.Fatalf("route: %s", memoXCache(w))
		}
		// Same key text, separate entries: neither replaces the other.
		if w := serve(); memoXCache(w) != "HIT" || w.Body.String() != "route body" {
			t.Fatalf("route: %s %q", memoXCache(w), w.Body.String())
		}
		if v := load("article:42"); v != "memo article:42 v1" {
			t.Fatalf("memo after route fill: %q", v)
		}
		load("article:43")
		if err := c.InvalidateKey(ctx, "articles", "article:42"); err != nil {
			t.Fatal(err)
		}
		if v := load("article:42"); v != "memo article:42 v3" {
			t.Fatalf("after InvalidateKey: %q", v)
		}
		if w := serve(); memoXCache(w) != "MISS" {
			t.Fatalf("route after InvalidateKey: %s", memoXCache(w))
		}
		if v := load("article:43"); v != "memo article:43 v2" {
			t.Fatalf("other key: %q", v)
		}
		if err := c.InvalidateRegion(ctx, "articles"); err != nil {
			t.Fatal(err)
		}
		if v := load("article:43"); v != "memo article:43 v4" {
			t.Fatalf("after InvalidateRegion: %q", v)
		}
	})
}

// unencodable has a field encoding/json rejects.
type unencodable struct {
	F func() `json:"f"`
}

func TestMemoizeCodecErrors(t *testing.T) {
	c := memoCache(t, core.RegionConfig{})
	ctx := context.Background()

	t.Run("marshal", func(t *testing.T) {
		var calls atomic.Int64
		fn := func(context.Context) (unencodable, error) { calls.Add(1); return unencodable{}, nil }
		for i := 0; i < 2; i++ {
			if _, err := core.Load(ctx, c, "articles", "bad-value", fn); err != nil {
				t.Fatalf("an encoding failure must not fail the call: %v", err)
			}
		}
		if calls.Load() != 2 {
			t.Fatalf("calls %d: an unencodable value is not cached, want 2", calls.Load())
		}
		if n := c.Stats()["articles"].NotStored[core.NotStoredEncode]; n != 2 {
			t.Fatalf("not_stored[encode] = %d, want 2", n)
		}
	})

	t.Run("undecodable stored value is a miss", func(t *testing.T) {
		// "not json" stored raw, then read as JSON: corrupt, recomputed, overwritten.
		if _, err := core.Load(ctx, c, "articles", "k", func(context.Context) (string, error) { return "not json", nil }, core.WithCodec(core.BytesCodec)); err != nil {
			t.Fatal(err)
		}
		before := c.Stats()["articles"].Corrupt
		var calls atomic.Int64
		fn := func(context.Context) (int, error) { calls.Add(1); return 7, nil }
		for i := 0; i < 2; i++ {
			v, err := core.Load(ctx, c, "articles", "k", fn)
			if err != nil || v != 7 {
				t.Fatalf("got %d, %v", v, err)
			}
		}
		if calls.Load() != 1 {
			t.Fatalf("calls %d: the recomputed value should have replaced the bad one", calls.Load())
		}
		if got := c.Stats()["articles"].Corrupt - before; got == 0 {
			t.Fatal("the undecodable value was not counted as corrupt")
		}
	})

	t.Run("bytes codec", func(t *testing.T) {
		var calls atomic.Int64
		fn := func(context.Context) ([]byte, error) { calls.Add(1); return []byte("raw bytes"), nil }
		b, err := core.Load(ctx, c, "articles", "raw", fn, core.WithCodec(core.BytesCodec))
		if err != nil || string(b) != "raw bytes" {
			t.Fatal(string(b), err)
		}
		b[0] = 'X' // the caller's copy; the cached value must not change
		b, err = core.Load(ctx, c, "articles", "raw", fn, core.WithCodec(core.BytesCodec))
		if err != nil || string(b) != "raw bytes" || calls.Load() != 1 {
			t.Fatalf("%q %v calls %d", b, err, calls.Load())
		}
		if _, err := core.BytesCodec.Marshal(42); err == nil || !strings.HasPrefix(err.Error(), "routecache: ") {
			t.Fatalf("BytesCodec.Marshal(42): %v", err)
		}
		var n int
		if err := core.BytesCodec.Unmarshal([]byte("1"), &n); err == nil {
			t.Fatal("BytesCodec.Unmarshal into *int: no error")
		}
	})

	t.Run("construction errors", func(t *testing.T) {
		key := func(i int) string { return strconv.Itoa(i) }
		fn := func(context.Context, int) (int, error) { return 0, nil }
		cases := map[string]func() error{
			"bytes codec for int": func() error {
				_, err := core.Memoize(c, "articles", key, fn, core.WithCodec(core.BytesCodec))
				return err
			},
			"unknown region": func() error { _, err := core.Memoize(c, "nope", key, fn); return err },
			"nil key func":   func() error { _, err := core.Memoize[int, int](c, "articles", nil, fn); return err },
			"nil codec":      func() error { _, err := core.Memoize(c, "articles", key, fn, core.WithCodec(nil)); return err },
			"empty tag":      func() error { _, err := core.Memoize(c, "articles", key, fn, core.WithTags("")); return err },
			"nil cache":      func() error { _, err := core.Memoize(nil, "articles", key, fn); return err },
		}
		for name, f := range cases {
			if err := f(); err == nil || !strings.HasPrefix(err.Error(), "routecache: ") {
				t.Errorf("%s: error %v", name, err)
			}
		}
		ran := false
		_, err := core.Load(ctx, c, "articles", "", func(context.Context) (int, error) { ran = true; return 0, nil })
		if err == nil || ran {
			t.Errorf("empty key: err %v, fn ran %v", err, ran)
		}
		if _, err := core.Load(ctx, c, "nope", "k", func(context.Context) (int, error) { ran = true; return 0, nil }); err == nil || ran {
			t.Errorf("unknown region: err %v, fn ran %v", err, ran)
		}
	})
}

// A value computed before an invalidation and stored after it is never
// returned to a later caller, nor to a caller that joined the fill after
// the invalidation completed.
func TestMemoizeInvalidationDuringFill(t *testing.T) {
	for _, kind := range []string{"tag", "region", "key"} {
		t.Run(kind, func(t *testing.T) {
			eachMemoBackend(t, core.RegionConfig{}, func(t *testing.T, c *core.Cache) {
				var version, calls atomic.Int64
				entered, release := make(chan struct{}), make(chan struct{})
				get, err := core.Memoize(c, "articles", func(id int) string { return "item:" + strconv.Itoa(id) },
					func(ctx context.Context, id int) (int64, error) {
						v := version.Load() // the function reads the data...
						if calls.Add(1) == 1 {
							close(entered)
							<-release // ...and is slow to answer
						}
						return v, nil
					}, core.WithKeyTags(func(key string) []string { return []string{key} }))
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				type result struct {
					v   int64
					err error
				}
				first := make(chan result)
				go func() { v, err := get(ctx, 1); first <- result{v, err} }()
				<-entered
				version.Add(1) // the data changes, then the cache is told
				switch kind {
				case "tag":
					err = c.InvalidateTags(ctx, "item:1")
				case "region":
					err = c.InvalidateRegion(ctx, "articles")
				case "key":
					err = c.InvalidateKey(ctx, "articles", "item:1")
				}
				if err != nil {
					t.Fatal(err)
				}
				// A caller starting after the invalidation joins the running fill...
				late := make(chan result)
				go func() { v, err := get(ctx, 1); late <- result{v, err} }()
				memoPoll(t, "late caller joins the fill", func() bool { return core.MemoWaiters(c, "articles", "item:1") == 1 })
				close(release)
				if r := <-first; r.err != nil || r.v != 0 {
					t.Fatalf("first caller: %+v (it started before the change: 0 is right)", r)
				}
				// ...but must not get the value read before the change.
				if r := <-late; r.err != nil || r.v != 1 {
					t.Fatalf("caller that started after the invalidation got %+v, want 1", r)
				}
				if st := c.Stats()["articles"]; st.Stores < 1 {
					t.Fatalf("the old value should have been stored (to prove it is not served); stores=%d", st.Stores)
				}
				if v, err := get(ctx, 1); err != nil || v != 1 {
					t.Fatalf("after invalidation: %d %v, want 1", v, err)
				}
				n := calls.Load()
				if v, err := get(ctx, 1); err != nil || v != 1 || calls.Load() != n {
					t.Fatalf("refill not served from cache: %d %v calls %d->%d", v, err, n, calls.Load())
				}
			})
		})
	}
}

// Writers change the data and invalidate; readers must never get a value
// older than the last invalidation that completed before they started.
func TestMemoizeInvalidationRaces(t *testing.T) {
	eachMemoBackend(t, core.RegionConfig{}, func(t *testing.T, c *core.Cache) {
		const keys = 4
		var data [keys]atomic.Int64      // the "database"
		var committed [keys]atomic.Int64 // versions whose invalidation has completed
		var stale, served atomic.Int64
		get, err := core.Memoize(c, "articles", func(id int) string { return "item:" + strconv.Itoa(id) },
			func(ctx context.Context, id int) (int64, error) { return data[id].Load(), nil },
			core.WithKeyTags(func(key string) []string { return []string{key} }))
		if err != nil {
			t.Fatal(err)
		}
		rounds := 200
		if testing.Short() {
			rounds = 40
		}
		var wg, writers sync.WaitGroup
		var readersDone atomic.Bool
		for id := 0; id < keys; id++ {
			writers.Add(1)
			go func(id int) {
				defer writers.Done()
				for i := 0; !readersDone.Load(); i++ {
					if i%4 == 0 {
						runtime.Gosched()
					}
					v := data[id].Add(1)
					if err := c.InvalidateTags(context.Background(), "item:"+strconv.Itoa(id)); err != nil {
						t.Error(err)
						return
					}
					committed[id].Store(v)
				}
			}(id)
		}
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					id := (g + i) % keys
					floor := committed[id].Load()
					got, err := get(context.Background(), id)
					if err != nil {
						t.Error(err)
						return
					}
					served.Add(1)
					if got < floor {
						stale.Add(1)
					}
				}
			}(g)
		}
		wg.Wait()
		readersDone.Store(true)
		writers.Wait()
		st := c.Stats()["articles"]
		t.Logf("served %d, hits %d, misses %d, stores %d, coalesced %d", served.Load(), st.Hits, st.Misses, st.Stores, st.Coalesced)
		if stale.Load() != 0 {
			t.Fatalf("%d of %d values were older than a completed invalidation", stale.Load(), served.Load())
		}
		if st.Misses == 0 || st.Stores == 0 {
			t.Fatalf("misses %d stores %d: the test did not fill", st.Misses, st.Stores)
		}
	})
}

var errOrigin = errors.New("origin down")

// Callers that waited for a failing run get its error; nothing is stored
// and the next call runs the function again.
func TestMemoizeErrorSharedWithWaiters(t *testing.T) {
	c := memoCache(t, core.RegionConfig{})
	var calls atomic.Int64
	release := make(chan struct{})
	fn := func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			<-release
			return "", errOrigin
		}
		return "ok", nil
	}
	const callers = 10
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		go func() {
			_, err := core.Load(context.Background(), c, "articles", "k", fn)
			errs <- err
		}()
	}
	memoPoll(t, "waiters", func() bool { return core.MemoWaiters(c, "articles", "k") == callers-1 })
	close(release)
	for i := 0; i < callers; i++ {
		if err := <-errs; !errors.Is(err, errOrigin) {
			t.Fatalf("caller got %v, want the origin's error", err)
		}
	}
	st := c.Stats()["articles"]
	if calls.Load() != 1 || st.Stores != 0 || st.NotStored[core.NotStoredError] != 1 {
		t.Fatalf("calls %d stores %d not_stored %v", calls.Load(), st.Stores, st.NotStored)
	}
	if v, err := core.Load(context.Background(), c, "articles", "k", fn); err != nil || v != "ok" || calls.Load() != 2 {
		t.Fatalf("after the error: %q %v calls %d", v, err, calls.Load())
	}
}

// A panic is re-raised in the caller that started the run; the callers
// that waited get an error.
func TestMemoizePanic(t *testing.T) {
	c := memoCache(t, core.RegionConfig{})
	release := make(chan struct{})
	fn := func(context.Context) (int, error) {
		<-release
		panic("boom")
	}
	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		_, _ = core.Load(context.Background(), c, "articles", "p", fn)
	}()
	memoPoll(t, "fill started", func() bool { return core.MemoWaiters(c, "articles", "p") == 0 })
	waiter := make(chan error, 1)
	go func() {
		_, err := core.Load(context.Background(), c, "articles", "p", fn)
		waiter <- err
	}()
	memoPoll(t, "waiter joined", func() bool { return core.MemoWaiters(c, "articles", "p") == 1 })
	close(release)
	if v := <-leader; v != "boom" {
		t.Fatalf("leader recovered %v, want the panic", v)
	}
	if err := <-waiter; err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("waiter: %v", err)
	}
	if n := c.Stats()["articles"].NotStored[core.NotStoredPanic]; n != 1 {
		t.Fatalf("not_stored[panic] = %d", n)
	}
}

// A caller whose context ends stops waiting; the run goes on for the
// others and its value is stored.
func TestMemoizeCallerGivesUp(t *testing.T) {
	c := memoCache(t, core.RegionConfig{})
	release := make(chan struct{})
	var calls atomic.Int64
	fn := func(ctx context.Context) (int, error) {
		calls.Add(1)
		<-release
		return 5, ctx.Err() // the run's context is not the caller's
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := core.Load(ctx, c, "articles", "g", fn)
		done <- err
	}()
	memoPoll(t, "fill started", func() bool { return calls.Load() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "routecache: ") {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(release)
	memoPoll(t, "value stored", func() bool { return c.Stats()["articles"].Stores == 1 })
	if v, err := core.Load(context.Background(), c, "articles", "g", fn); err != nil || v != 5 || calls.Load() != 1 {
		t.Fatalf("%d %v calls %d", v, err, calls.Load())
	}
}

// memoAge waits until a value stored with a 1 ms TTL is past it.
func memoAge() { time.Sleep(5 * time.Millisecond) }

// Stale-if-error: within the window, a failing (or panicking) function
// is replaced by the stale value; outside of it the error comes back.
func TestMemoizeStaleIfError(t *testing.T) {
	c := memoCache(t, core.RegionConfig{TTL: time.Millisecond, StaleIfError: time.Hour})
	ctx := context.Background()
	v, err := core.Load(ctx, c, "articles", "s", func(context.Context) (string, error) { return "v1", nil })
	if err != nil || v != "v1" {
		t.Fatal(v, err)
	}
	memoAge()
	v, err = core.Load(ctx, c, "articles", "s", func(context.Context) (string, error) { return "", errOrigin })
	if err != nil || v != "v1" {
		t.Fatalf("failing function with a stale value: %q %v", v, err)
	}
	v, err = core.Load(ctx, c, "articles", "s", func(context.Context) (string, error) { panic("boom") })
	if err != nil || v != "v1" {
		t.Fatalf("panicking function with a stale value: %q %v", v, err)
	}
	if st := c.Stats()["articles"]; st.StaleIfError != 2 || st.Stale != 2 {
		t.Fatalf("stale_if_error %d stale %d, want 2 2", st.StaleIfError, st.Stale)
	}
	if _, err := core.Load(ctx, c, "articles", "other", func(context.Context) (string, error) { return "", errOrigin }); !errors.Is(err, errOrigin) {
		t.Fatalf("no stale value: %v", err)
	}
	// An invalidated value is never a stand-in.
	if err := c.InvalidateKey(ctx, "articles", "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Load(ctx, c, "articles", "s", func(context.Context) (string, error) { return "", errOrigin }); !errors.Is(err, errOrigin) {
		t.Fatalf("invalidated stale value served: %v", err)
	}
}

// Stale-while-revalidate: the stale value comes back at once and one
// background run replaces it.
func TestMemoizeStaleWhileRevalidate(t *testing.T) {
	c := memoCache(t, core.RegionConfig{TTL: time.Millisecond, Stale: time.Hour})
	ctx := context.Background()
	var calls atomic.Int64
	fn := func(context.Context) (string, error) { return "v" + strconv.FormatInt(calls.Add(1), 10), nil }
	if v, _ := core.Load(ctx, c, "articles", "w", fn); v != "v1" {
		t.Fatal(v)
	}
	memoAge()
	if v, err := core.Load(ctx, c, "articles", "w", fn); err != nil || v != "v1" {
		t.Fatalf("stale read: %q %v", v, err)
	}
	memoPoll(t, "background refresh stored", func() bool { return c.Stats()["articles"].Stores == 2 })
	if v, err := core.Load(ctx, c, "articles", "w", fn); err != nil || v != "v2" {
		t.Fatalf("after refresh: %q %v", v, err)
	}
	if st := c.Stats()["articles"]; st.Refreshes < 1 || st.Stale < 1 {
		t.Fatalf("refreshes %d stale %d", st.Refreshes, st.Stale)
	}
}

// A dead backend never fails a call: the function runs, the error is counted.
func TestMemoizeBackendDownFailsOpen(t *testing.T) {
	c := memoCache(t, core.RegionConfig{Backend: "redis://127.0.0.1:1/0?timeout=100ms"})
	var calls atomic.Int64
	for i := 0; i < 3; i++ {
		v, err := core.Load(context.Background(), c, "articles", "k", func(context.Context) (int, error) {
			calls.Add(1)
			return 9, nil
		}, core.WithTags("t"))
		if err != nil || v != 9 {
			t.Fatalf("call %d: %d %v", i, v, err)
		}
	}
	st := c.Stats()["articles"]
	if calls.Load() != 3 || st.Errors == 0 || st.Bypasses[core.BypassBackend] == 0 {
		t.Fatalf("calls %d errors %d bypasses %v", calls.Load(), st.Errors, st.Bypasses)
	}
}

func memoXCache(w *httptest.ResponseRecorder) string { return w.Header().Get("X-Cache") }

// Close waits for a memoized fill running in the background (its caller
// gave up) before releasing the backends; after Close, calls run uncached.
func TestMemoizeCloseWaitsForBackgroundFill(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": {}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var started, finished atomic.Bool
	fn := func(context.Context) (int, error) {
		started.Store(true)
		<-release
		finished.Store(true)
		return 1, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := core.Load(ctx, c, "articles", "k", fn); done <- err }()
	memoPoll(t, "fill started", started.Load)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller: %v", err)
	}
	closed := make(chan bool)
	go func() { _ = c.Close(); closed <- finished.Load() }()
	runtime.Gosched()
	close(release)
	if !<-closed {
		t.Fatal("Close returned before the background fill finished")
	}
	var calls atomic.Int64
	for i := 0; i < 2; i++ {
		if v, err := core.Load(context.Background(), c, "articles", "k", func(context.Context) (int, error) { calls.Add(1); return 2, nil }); err != nil || v != 2 {
			t.Fatalf("after Close: %d %v", v, err)
		}
	}
	if calls.Load() != 2 || c.Stats()["articles"].Bypasses[core.BypassClosed] != 2 {
		t.Fatalf("calls %d bypasses %v", calls.Load(), c.Stats()["articles"].Bypasses)
	}
}

// An interface result type, nil included, round-trips.
func TestMemoizeInterfaceResult(t *testing.T) {
	c := memoCache(t, core.RegionConfig{})
	for i := 0; i < 2; i++ {
		v, err := core.Load(context.Background(), c, "articles", "nil", func(context.Context) (any, error) { return nil, nil })
		if err != nil || v != nil {
			t.Fatalf("%v %v", v, err)
		}
	}
	v, err := core.Load(context.Background(), c, "articles", "map", func(context.Context) (any, error) { return map[string]any{"a": 1.0}, nil })
	if m, ok := v.(map[string]any); err != nil || !ok || m["a"] != 1.0 {
		t.Fatalf("%v %v", v, err)
	}
}
