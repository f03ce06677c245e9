package core_test

import (
	"context"
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
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/redis/go-redis/v9"
)

// These tests hold the lease holder's handler on a channel and know that
// the other instance is polling (the engine's lease-wait test hook), never by
// sleeping. LeaseWait is long (20 s): a waiter that only gives up at
// LeaseWait shows as a counted lease timeout and an extra origin call.

const longLeaseWait = 20 * time.Second

// result of one request served in the background.
type served struct {
	w *httptest.ResponseRecorder
}

func serveAsync(rt *core.Route, target string, p adapter.Params, h http.HandlerFunc) <-chan served {
	out := make(chan served, 1)
	go func() { out <- served{serveOnce(rt, target, p, h)} }()
	return out
}

func await(t *testing.T, what string, ch <-chan served) *httptest.ResponseRecorder {
	t.Helper()
	select {
	case s := <-ch:
		return s.w
	case <-time.After(2 * longLeaseWait): // a failure bound only
		t.Fatalf("%s never answered", what)
		return nil
	}
}

// Item 3(a): with a near cache, an instance waiting for another's fill
// after an invalidation polls Redis, not its L1 (which still holds the
// entry from before the invalidation), and takes the new entry as soon as
// the holder stores it.
func TestLeaseWaiterSeesRemoteEntryThroughNearCache(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?near_max_bytes=4MiB&timeout=5s"
	cs := instances(t, 2, url, core.RegionConfig{LeaseWait: longLeaseWait})
	a, b := cs[0], cs[1]
	var version, calls atomic.Int64
	var gated atomic.Bool
	gate := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if gated.Load() {
			<-gate
		}
		fmt.Fprint(w, version.Load())
	}
	rta, _ := a.Route("r", core.Tags("item:{id}"))
	rtb, _ := b.Route("r", core.Tags("item:{id}"))
	p := mapParams{"id": "1"}
	serveOnce(rta, "/items/1", p, h) // A fills version 0
	serveOnce(rtb, "/items/1", p, h) // B reads it into its L1
	if w := serveOnce(rtb, "/items/1", p, h); xc(w) != "HIT" || calls.Load() != 1 {
		t.Fatalf("B: %s, %d calls", xc(w), calls.Load())
	}
	arrived := expectMessage(t, nearOf(b), underPrefix(core.RegionPrefix(b, "r")))
	version.Add(1)
	if err := a.InvalidateTags(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	arrived()
	gated.Store(true)
	aDone := serveAsync(rta, "/items/1", p, h)
	waitFor(t, "A's fill to start", func() bool { return calls.Load() == 2 })
	bDone := serveAsync(rtb, "/items/1", p, h)
	waitUntil(t, "B to poll for A's fill", func() bool { return leaseWaiters() == 1 })
	close(gate)
	wa, wb := await(t, "A", aDone), await(t, "B", bDone)
	if wa.Body.String() != "1" || wb.Body.String() != "1" || xc(wb) != "HIT" {
		t.Fatalf("A %s %q, B %s %q", xc(wa), wa.Body.String(), xc(wb), wb.Body.String())
	}
	if n, lt := calls.Load(), b.Stats()["r"].LeaseTimeouts; n != 2 || lt != 0 {
		t.Fatalf("%d origin calls (want 2), B lease timeouts %d (want 0): B did not see A's entry in Redis", n, lt)
	}
}

// Item 3(b): when the holder's response is not stored (a 404), the waiting
// instance learns that the lease was released and goes on at once instead
// of waiting LeaseWait.
func TestLeaseWaiterGoesOnWhenHolderStoresNothing(t *testing.T) {
	for name, url := range map[string]string{
		"redis":      "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s",
		"memcache":   "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=5s",
		"redis-near": "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s&near_max_bytes=1MiB",
	} {
		t.Run(name, func(t *testing.T) {
			cs := instances(t, 2, url, core.RegionConfig{LeaseWait: longLeaseWait})
			a, b := cs[0], cs[1]
			var calls atomic.Int64
			gate := make(chan struct{})
			h := func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					<-gate
				}
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, "nope")
			}
			rta, _ := a.Route("r")
			rtb, _ := b.Route("r")
			aDone := serveAsync(rta, "/missing", noParams, h)
			waitFor(t, "A's fill to start", func() bool { return calls.Load() == 1 })
			bDone := serveAsync(rtb, "/missing", noParams, h)
			waitUntil(t, "B to poll for A's fill", func() bool { return leaseWaiters() == 1 })
			close(gate)
			wa, wb := await(t, "A", aDone), await(t, "B", bDone)
			if wa.Code != 404 || wb.Code != 404 {
				t.Fatalf("A %d, B %d", wa.Code, wb.Code)
			}
			if n, lt := calls.Load(), b.Stats()["r"].LeaseTimeouts; n != 2 || lt != 0 {
				t.Fatalf("%d origin calls (want 2), B lease timeouts %d (want 0): B waited out LeaseWait after the lease was released", n, lt)
			}
		})
	}
}

// leaseHook runs fn once, just before the client sends the first lease
// acquisition (SET ... NX on a "<prefix>:l:" key).
type leaseHook struct {
	prefix string
	once   sync.Once
	fn     func()
}

func (h *leaseHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *leaseHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == "set" && len(args) > 1 {
			if k, _ := args[1].(string); strings.HasPrefix(k, h.prefix+":l:") {
				h.once.Do(h.fn)
			}
		}
		return next(ctx, cmd)
	}
}
func (h *leaseHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Item 4: an instance that takes the lease just after another instance
// stored the entry and released the lease uses that entry instead of
// running the handler again. B's lookup has missed; right before B's
// lease request leaves, A fills the key completely.
func TestLeaseTakenAfterRemoteFillDoesNotRefill(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s"
	prefix := uniquePrefix(t)
	cs := instances(t, 2, url, core.RegionConfig{Prefix: prefix, LeaseWait: longLeaseWait})
	a, b := cs[0], cs[1]
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "call ", calls.Add(1)) }
	rta, _ := a.Route("r")
	rtb, _ := b.Route("r")
	var wa *httptest.ResponseRecorder
	core.RegionBackend(b, "r").(*redisbe.Backend).Client().AddHook(&leaseHook{prefix: prefix, fn: func() {
		wa = serveOnce(rta, "/cold", noParams, h)
	}})
	wb := serveOnce(rtb, "/cold", noParams, h)
	if wa == nil || xc(wa) != "MISS" {
		t.Fatal("A did not fill before B's lease request")
	}
	if n := calls.Load(); n != 1 || xc(wb) != "HIT" || wb.Body.String() != "call 1" {
		t.Fatalf("%d origin calls (want 1); B %s %q", n, xc(wb), wb.Body.String())
	}
}

// Item 4 under load: concurrent cold requests spread over 3 instances with
// a fast origin call it once per key.
func TestLeaseOneOriginCallPerColdKeyUnderLoad(t *testing.T) {
	for name, url := range map[string]string{
		"redis":    "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s",
		"memcache": "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=5s",
	} {
		t.Run(name, func(t *testing.T) {
			cs := instances(t, 3, url, core.RegionConfig{LeaseWait: longLeaseWait})
			var calls atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				fmt.Fprint(w, "filled ", r.URL.Path)
			}
			servers := make([]*httptest.Server, len(cs))
			for i, c := range cs {
				mw, err := c.Middleware("r")
				if err != nil {
					t.Fatal(err)
				}
				servers[i] = httptest.NewServer(mw(http.HandlerFunc(h)))
				defer servers[i].Close()
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 2 * longLeaseWait}
			const keys, n = 5, 200
			for k := 0; k < keys; k++ {
				path := fmt.Sprintf("/cold/%d", k)
				var wg sync.WaitGroup
				for i := 0; i < n; i++ {
					wg.Add(1)
					go func(i int) {
						defer wg.Done()
						req, _ := http.NewRequest("GET", servers[i%len(servers)].URL+path, nil)
						req.Host = "api.example" // replicas behind one name
						resp, err := client.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						defer resp.Body.Close()
						body, _ := io.ReadAll(resp.Body)
						if resp.StatusCode != 200 || string(body) != "filled "+path {
							t.Errorf("%s: %d %q", path, resp.StatusCode, body)
						}
					}(i)
				}
				wg.Wait()
			}
			if c := calls.Load(); c != keys {
				t.Fatalf("%d origin calls for %d cold keys × %d requests over %d instances (want %d)", c, keys, n, len(cs), keys)
			}
		})
	}
}
