package core_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core"
)

// lifecycleApp serves GET /items/{id} cached in region "r" with tag
// item:{id}, and PUT /items/{id} invalidating that tag. The data is a
// version per item; PUT bumps it. A PUT's handler may be held (hold).
type lifecycleApp struct {
	c       *core.Cache
	mux     *http.ServeMux
	version [16]atomic.Int64
	hold    chan struct{} // when non-nil, PUT handlers wait on it
	entered chan int      // PUT handlers report here once they changed the data
}

func newLifecycleApp(t *testing.T, c *core.Cache) *lifecycleApp {
	t.Helper()
	a := &lifecycleApp{c: c, mux: http.NewServeMux(), entered: make(chan int, 64)}
	mw, err := c.Middleware("r", core.Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := c.InvalidateMiddleware(core.Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	id := func(r *http.Request) int {
		var n int
		fmt.Sscan(r.PathValue("id"), &n)
		return n % 16
	}
	a.mux.Handle("GET /items/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %d v%d", id(r), a.version[id(r)].Load())
	})))
	a.mux.Handle("PUT /items/{id}", inv(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.version[id(r)].Add(1) // the data changes...
		a.entered <- id(r)
		if a.hold != nil {
			<-a.hold // ...and the answer is slow to come
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	return a
}

func (a *lifecycleApp) do(method string, id int) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	a.mux.ServeHTTP(w, httptest.NewRequest(method, fmt.Sprintf("/items/%d", id), nil))
	return w
}

// Close with invalidating requests in flight: their handlers have changed
// the data but not yet answered. Close waits for them, applies their
// invalidations, and a new Cache on the same Redis serves none of the
// entries computed before the change.
func TestCloseWithInvalidatingRequestsInFlightAppliesThem(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0"
	prefix := uniquePrefix(t)
	rc := core.RegionConfig{Backend: url, Prefix: prefix, TTL: time.Hour}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	a := newLifecycleApp(t, c)
	const n = 5
	for i := 0; i < n; i++ {
		a.do("GET", i)
		if w := a.do("GET", i); w.Header().Get("X-Cache") != "HIT" {
			t.Fatalf("item %d not cached: %q", i, w.Header().Get("X-Cache"))
		}
	}
	a.hold = make(chan struct{})
	puts := make(chan int, n)
	for i := 0; i < n; i++ {
		go func(i int) { puts <- a.do("PUT", i).Code }(i)
	}
	for i := 0; i < n; i++ {
		<-a.entered
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	waitFor(t, "Close to start", func() bool { return core.Closing(c) })
	close(a.hold)
	var codes []int
	for i := 0; i < n; i++ {
		codes = append(codes, <-puts)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, code := range codes {
		if code != http.StatusNoContent {
			t.Errorf("PUT answered %d, want 204 (invalidation applied)", code)
		}
	}
	c2, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	b := newLifecycleApp(t, c2)
	for i := range b.version {
		b.version[i].Store(a.version[i].Load())
	}
	stale := 0
	for i := 0; i < n; i++ {
		w := b.do("GET", i)
		if w.Header().Get("X-Cache") == "HIT" && w.Body.String() == fmt.Sprintf("item %d v0", i) {
			stale++
		}
	}
	t.Logf("pre-PUT entries served as HITs by a new Cache after Close: %d/%d", stale, n)
	if stale > 0 {
		t.Fatalf("%d/%d pre-PUT entries served after their PUTs answered", stale, n)
	}
}

// pauseWrites stops the Redis at addr from running write commands until
// the returned function is called (CLIENT PAUSE WRITE, then UNPAUSE).
func pauseWrites(t *testing.T, addr string) (unpause func()) {
	t.Helper()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "600000", "WRITE").Err(); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	var once sync.Once
	unpause = func() {
		once.Do(func() {
			_ = admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err()
			admin.Close()
		})
	}
	t.Cleanup(unpause)
	return unpause
}

// A paused Redis (CLIENT PAUSE WRITE) makes an invalidation's INCR time
// out. The invalidation is kept and retried until Redis takes it; until
// then this Cache serves nothing the pending bump would invalidate, and a
// declarative invalidation does not answer 2xx.
func TestInvalidationPausedRedisIsRetried(t *testing.T) {
	srv := startRedisProc(t)
	url := "redis://" + srv.addr() + "/0?timeout=100ms"
	prefix := uniquePrefix(t)
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: prefix, TTL: time.Hour}},
		Breaker: core.BreakerConfig{Failures: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newLifecycleApp(t, c)
	a.do("GET", 1)
	a.do("GET", 2)
	if w := a.do("GET", 1); w.Header().Get("X-Cache") != "HIT" {
		t.Fatalf("not cached: %q", w.Header().Get("X-Cache"))
	}
	unpause := pauseWrites(t, srv.addr())

	// Programmatic: the call reports the failure, the bump stays queued.
	a.version[1].Add(1)
	err = c.InvalidateTags(context.Background(), "item:1")
	if !errors.Is(err, core.ErrInvalidationPending) {
		t.Fatalf("InvalidateTags against a paused Redis: %v, want ErrInvalidationPending", err)
	}
	// Two bumps: the tag epoch's, then the tag's (runtimetags.go).
	if st := c.Stats()["r"]; st.InvalidationsPending != 2 {
		t.Fatalf("InvalidationsPending %d, want 2 (epoch and tag)", st.InvalidationsPending)
	}
	// While it is pending, the old entry is not served.
	if w := a.do("GET", 1); w.Body.String() != "item 1 v1" {
		t.Fatalf("pending invalidation: GET served %q (%s), want item 1 v1", w.Body.String(), w.Header().Get("X-Cache"))
	}
	// Declarative: the PUT's invalidation cannot be applied: no 2xx.
	if w := a.do("PUT", 2); w.Code != http.StatusServiceUnavailable || w.Header().Get("X-Cache-Invalidation") != "pending" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("PUT with its invalidation not applied answered %d %v, want 503 pending", w.Code, w.Header())
	}
	<-a.entered
	if w := a.do("GET", 2); w.Body.String() != "item 2 v1" {
		t.Fatalf("pending invalidation: GET served %q (%s), want item 2 v1", w.Body.String(), w.Header().Get("X-Cache"))
	}
	unpause()
	// A new Cache (another instance) sees both invalidations.
	c2, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: prefix, TTL: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	b := newLifecycleApp(t, c2)
	b.version[1].Store(1)
	b.version[2].Store(1)
	// Once Redis takes writes again, the queued bumps are applied.
	waitLong(t, "both invalidations applied", func() bool {
		return b.do("GET", 1).Body.String() == "item 1 v1" && b.do("GET", 2).Body.String() == "item 2 v1"
	})
	waitLong(t, "no invalidation pending", func() bool { return c.Stats()["r"].InvalidationsPending == 0 })
	// And this Cache caches again.
	a.do("GET", 3)
	if w := a.do("GET", 3); w.Header().Get("X-Cache") != "HIT" {
		t.Fatalf("after the queue drained: %q, want HIT", w.Header().Get("X-Cache"))
	}
	if st := c.Stats()["r"]; st.InvalidationRetries == 0 || st.InvalidationsLost != 0 {
		t.Fatalf("retries %d lost %d", st.InvalidationRetries, st.InvalidationsLost)
	}
}

// Close retries pending invalidations until the backend takes them: here
// Redis comes back while Close is waiting.
func TestCloseDrainsPendingInvalidations(t *testing.T) {
	srv := startRedisProc(t)
	url := "redis://" + srv.addr() + "/0?timeout=100ms"
	rc := core.RegionConfig{Backend: url, Prefix: uniquePrefix(t), TTL: time.Hour}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}, CloseTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a := newLifecycleApp(t, c)
	for i := 0; i < 3; i++ {
		a.do("GET", i)
	}
	unpause := pauseWrites(t, srv.addr())
	for i := 0; i < 3; i++ {
		a.version[i].Add(1)
		if err := c.InvalidateTags(context.Background(), fmt.Sprintf("item:%d", i)); !errors.Is(err, core.ErrInvalidationPending) {
			t.Fatalf("invalidate: %v", err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	waitFor(t, "Close to start", func() bool { return core.Closing(c) })
	unpause()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := c.Stats()["r"]; st.InvalidationsLost != 0 || st.InvalidationsPending != 0 {
		t.Fatalf("lost %d pending %d", st.InvalidationsLost, st.InvalidationsPending)
	}
	c2, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	b := newLifecycleApp(t, c2)
	for i := 0; i < 3; i++ {
		b.version[i].Store(1)
		if w := b.do("GET", i); w.Body.String() != fmt.Sprintf("item %d v1", i) {
			t.Fatalf("after Close: %q (%s)", w.Body.String(), w.Header().Get("X-Cache"))
		}
	}
}

// What Close cannot apply within CloseTimeout is reported: the error, the
// log and Stats.InvalidationsLost; invalidations after Close are refused
// and counted; an invalidating route answers 503 without running.
func TestCloseReportsInvalidationsItCannotApply(t *testing.T) {
	srv := startRedisProc(t)
	url := "redis://" + srv.addr() + "/0?timeout=100ms"
	var logs syncBuffer
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: uniquePrefix(t)}},
		CloseTimeout: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a := newLifecycleApp(t, c)
	pauseWrites(t, srv.addr())
	if err := c.InvalidateKey(context.Background(), "r", "/items/1"); !errors.Is(err, core.ErrInvalidationPending) {
		t.Fatalf("invalidate: %v", err)
	}
	err = c.Close()
	if err == nil || !strings.Contains(err.Error(), "1 invalidations could not be applied") {
		t.Fatalf("Close: %v", err)
	}
	if st := c.Stats()["r"]; st.InvalidationsLost != 1 || st.InvalidationsPending != 0 {
		t.Fatalf("lost %d pending %d", st.InvalidationsLost, st.InvalidationsPending)
	}
	if !strings.Contains(logs.String(), "invalidations lost at close") {
		t.Fatalf("no log line: %s", logs.String())
	}
	if err := c.InvalidateTags(context.Background(), "item:1"); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("invalidate after Close: %v", err)
	}
	if st := c.Stats()["r"]; st.InvalidationsLost != 2 {
		t.Fatalf("lost %d after an invalidation past Close, want 2", st.InvalidationsLost)
	}
	if w := a.do("PUT", 1); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("PUT after Close: %d", w.Code)
	}
	select {
	case <-a.entered:
		t.Fatal("the PUT handler ran after Close")
	default:
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLong is waitFor with room for retries with backoff on a busy machine.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
