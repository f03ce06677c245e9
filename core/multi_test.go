package core_test

import (
	"context"
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
	"github.com/routecache/routecache/core/backend/near"
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/routecache/routecache/core/backend"

	"github.com/redis/go-redis/v9"
)

func nearOf(c *core.Cache) *near.Cache { return core.RegionBackend(c, "r").(*near.Cache) }

// expectMessage arms nb to notice the next invalidation message about a
// counter named by match; the returned wait blocks until that message has
// been applied (bounded at 30 s, for a loaded machine). The channel also
// carries other tests' invalidations, on the same server: counting every
// message would end the wait early.
func expectMessage(t *testing.T, nb *near.Cache, match func(counter string) bool) (wait func()) {
	t.Helper()
	got := make(chan struct{}, 1)
	f := func(counter string) {
		if match(counter) {
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}
	nb.OnApplied(f)
	return func() {
		t.Helper()
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("the invalidation message never reached the near cache")
		}
	}
}

// underPrefix matches the counters of a region with the given Prefix,
// except the tag epoch, which a tag invalidation bumps (and publishes)
// before its tags.
func underPrefix(prefix string) func(string) bool {
	return func(counter string) bool {
		return strings.HasPrefix(counter, prefix+":") && counter != prefix+":v:e"
	}
}

// An invalidation on instance A is seen by B's next read once the pub/sub
// message has arrived, and an L1 hit on B costs no round trip.
func TestNearCacheCoherence(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s&near_max_bytes=4MiB"
	cs := instances(t, 2, url, core.RegionConfig{})
	a, b := cs[0], cs[1]
	var version atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
	rta, _ := a.Route("r", core.Tags("item:{id}"))
	rtb, _ := b.Route("r", core.Tags("item:{id}"))
	p := mapParams{"id": "1"}
	hook := &countingHook{}
	nearOf(b).Client().AddHook(hook)
	tagCounter := core.TagCounter(b, "r", "item:1")
	stale := 0
	const trials = 50
	for i := 0; i < trials; i++ {
		// B trusts its local counters only while its subscription is live
		// (until then it reads through to Redis): on a loaded machine the
		// subscription New starts may not be up by the first trial.
		waitFor(t, "B's invalidation subscription", func() bool { return nearOf(b).Stats().Coherent })
		serveOnce(rta, "/items/1", p, h)
		serveOnce(rtb, "/items/1", p, h) // B learns entry and counters
		inner := nearOf(b).Inner().(*redisbe.Backend)
		before := hook.trips.Load() + int64(inner.LeanLoads())
		if w := serveOnce(rtb, "/items/1", p, h); w.Header().Get("X-Cache") != "HIT" {
			t.Fatalf("trial %d: B not a hit: %s", i, w.Header().Get("X-Cache"))
		}
		if d := hook.trips.Load() + int64(inner.LeanLoads()) - before; d != 0 {
			t.Fatalf("trial %d: near hit cost %d round trips", i, d)
		}
		arrived := expectMessage(t, nearOf(b), func(c string) bool { return c == tagCounter })
		version.Add(1)
		if err := a.InvalidateTags(context.Background(), "item:1"); err != nil {
			t.Fatal(err)
		}
		arrived()
		w := serveOnce(rtb, "/items/1", p, h)
		if w.Body.String() != fmt.Sprint(version.Load()) {
			stale++
		}
	}
	if stale != 0 {
		t.Fatalf("%d stale reads in %d trials after the message arrived", stale, trials)
	}
}

// With the subscription cut, B must not serve from L1; after the client
// resubscribes, L1 hits resume.
func TestNearCachePubSubCut(t *testing.T) {
	addr := testServer(t, "ROUTECACHE_TEST_REDIS")
	url := "redis://" + addr + "/0?timeout=5s&near_max_bytes=4MiB"
	cs := instances(t, 2, url, core.RegionConfig{})
	a, b := cs[0], cs[1]
	var version atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
	rta, _ := a.Route("r", core.Tags("item:{id}"))
	rtb, _ := b.Route("r", core.Tags("item:{id}"))
	p := mapParams{"id": "1"}
	serveOnce(rtb, "/items/1", p, h)
	serveOnce(rtb, "/items/1", p, h)
	nb := nearOf(b)
	resubs := nb.Stats().Resubscribes
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	// Cut every pub/sub connection; while B is incoherent, a change made
	// through A (whose message B cannot receive) must not be hidden by L1.
	if err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to notice the cut", func() bool { return !nb.Stats().Coherent || nb.Stats().Resubscribes > resubs })
	version.Add(1)
	if err := a.InvalidateTags(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	if w := serveOnce(rtb, "/items/1", p, h); w.Body.String() != "1" {
		t.Fatalf("stale L1 read after the cut: %q", w.Body.String())
	}
	waitFor(t, "B to resubscribe", func() bool { return nb.Stats().Coherent && nb.Stats().Resubscribes > resubs })
	serveOnce(rtb, "/items/1", p, h)
	local := nb.Stats().LocalHits
	if w := serveOnce(rtb, "/items/1", p, h); w.Header().Get("X-Cache") != "HIT" || nb.Stats().LocalHits != local+1 {
		t.Fatalf("L1 hits did not resume: %s, local hits %d -> %d", w.Header().Get("X-Cache"), local, nb.Stats().LocalHits)
	}
	_ = rta
}

// 200 concurrent cold requests spread over 3 instances call the origin once.
func TestLeaseOneOriginCallAcrossInstances(t *testing.T) {
	for name, url := range map[string]string{
		// Generous timeouts and lease wait: 200 requests dialling at once
		// on a loaded machine can take seconds, and an operation that
		// times out is a BYPASS (an origin call) that is not the lease's.
		"redis":    "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=30s",
		"memcache": "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=30s",
	} {
		t.Run(name, func(t *testing.T) {
			cs := instances(t, 3, url, core.RegionConfig{LeaseWait: 2 * time.Minute})
			var calls atomic.Int64
			release := make(chan struct{})
			h := func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				<-release
				fmt.Fprint(w, "filled")
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
			const n = 200
			var wg sync.WaitGroup
			var started sync.WaitGroup
			bodies := make([]string, n)
			started.Add(n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					started.Done()
					// Replicas behind a load balancer see the same Host.
					req, _ := http.NewRequest("GET", servers[i%len(servers)].URL+"/cold", nil)
					req.Host = "api.example"
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					var sb strings.Builder
					_, _ = fmt.Fprint(&sb, resp.StatusCode, " ")
					buf := make([]byte, 64)
					k, _ := resp.Body.Read(buf)
					sb.Write(buf[:k])
					bodies[i] = sb.String()
				}(i)
			}
			started.Wait()
			// Every request reaches its instance before the fill ends: the
			// one running the handler, the others waiting, in their process
			// (flight) or for another instance's lease.
			waitFor(t, "the first origin call", func() bool { return calls.Load() >= 1 })
			waitUntil(t, "every other request to wait for the fill", func() bool {
				return calls.Load() > 1 || flightWaiters()+leaseWaiters() >= n-1
			})
			close(release)
			wg.Wait()
			if c := calls.Load(); c != 1 {
				t.Fatalf("%d origin calls for %d requests over %d instances", c, n, len(cs))
			}
			for i, b := range bodies {
				if b != "200 filled" {
					t.Fatalf("request %d got %q", i, b)
				}
			}
		})
	}
}

// A lease whose holder died blocks nobody past LeaseWait, and frees the
// key when it expires.
func TestLeaseHolderDies(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s"
	// The dead lease lives 2 s: long enough that it is still held when the
	// request below runs, even on a loaded machine.
	cs := instances(t, 1, url, core.RegionConfig{LeaseTTL: 2 * time.Second, LeaseWait: 50 * time.Millisecond})
	c := cs[0]
	rt, _ := c.Route("r")
	be := core.RegionBackend(c, "r")
	req := httptest.NewRequest("GET", "/dead", nil)
	// A "crashed instance" takes the lease and never gives it back.
	lkey := core.LeaseKey(rt, req, noParams, "/p")
	if _, got, err := be.(backend.Leaser).Acquire(context.Background(), lkey, 2*time.Second); err != nil || !got {
		t.Fatalf("acquire: %v %v", got, err)
	}
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { calls.Add(1); fmt.Fprint(w, "ok") }
	w := httptest.NewRecorder()
	_ = adapter.ServeRoute(rt, w, req, noParams, "/p", func(w http.ResponseWriter, r *http.Request) error { h(w, r); return nil })
	if w.Body.String() != "ok" || calls.Load() != 1 || c.Stats()["r"].LeaseTimeouts != 1 {
		t.Fatalf("body %q calls %d lease timeouts %d", w.Body.String(), calls.Load(), c.Stats()["r"].LeaseTimeouts)
	}
	// After the lease TTL the key is free: a new lease is granted.
	waitFor(t, "the dead lease to expire", func() bool {
		tok, got, err := be.(backend.Leaser).Acquire(context.Background(), lkey, time.Second)
		if got {
			_ = be.(backend.Leaser).Release(context.Background(), lkey, tok)
		}
		return err == nil && got
	})
}

// Memcached has no pub/sub: a near cache trusts counters for
// near_staleness, then re-reads them.
func TestNearCacheMemcacheStaleness(t *testing.T) {
	url := "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE") + "?timeout=2s&near_max_bytes=4MiB&near_staleness=200ms"
	cs := instances(t, 2, url, core.RegionConfig{})
	a, b := cs[0], cs[1]
	var version atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
	rtb, _ := b.Route("r", core.Tags("t"))
	serveOnce(rtb, "/x", noParams, h)
	serveOnce(rtb, "/x", noParams, h)
	nb := nearOf(b)
	local := nb.Stats().LocalHits
	serveOnce(rtb, "/x", noParams, h)
	if nb.Stats().LocalHits == local {
		t.Fatal("no L1 hit within near_staleness")
	}
	version.Add(1)
	if err := a.InvalidateTags(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to re-read counters after near_staleness", func() bool {
		return serveOnce(rtb, "/x", noParams, h).Body.String() == "1"
	})
}

func TestOnInvalidateHooks(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s&near_max_bytes=1MiB"
	cs := instances(t, 2, url, core.RegionConfig{})
	a, b := cs[0], cs[1]
	var mu sync.Mutex
	var got []core.InvalidationEvent
	b.OnInvalidate(func(ev core.InvalidationEvent) { mu.Lock(); got = append(got, ev); mu.Unlock() })
	var local []core.InvalidationEvent
	a.OnInvalidate(func(ev core.InvalidationEvent) { local = append(local, ev) })
	ctx := context.Background()
	if err := a.InvalidateTags(ctx, "article:7"); err != nil {
		t.Fatal(err)
	}
	if err := a.InvalidateRegion(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := a.InvalidateKey(ctx, "r", "/articles/7"); err != nil {
		t.Fatal(err)
	}
	if len(local) != 3 || local[0].Kind != "tag" || local[0].Names[0] != "article:7" || local[0].Remote || local[1].Kind != "region" || local[2].Names[0] != "/articles/7" {
		t.Fatalf("local events %+v", local)
	}
	waitFor(t, "3 remote events on B", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	mu.Lock()
	defer mu.Unlock()
	want := []core.InvalidationEvent{
		{Kind: "tag", Names: []string{"article:7"}, Remote: true},
		{Kind: "region", Region: "r", Remote: true},
		{Kind: "key", Region: "r", Names: []string{"/articles/7"}, Remote: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("remote events\n got %+v\nwant %+v", got, want)
	}
}
