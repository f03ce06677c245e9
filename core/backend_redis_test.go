package core_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/redis/go-redis/v9"
)

func TestRedisURLErrors(t *testing.T) {
	cases := map[string]string{
		"redis://127.0.0.1:6379/0?timeout=fast":       `timeout: bad duration "fast"`,
		"redis://127.0.0.1:6379/0?timeout=-1s":        `timeout: bad duration "-1s"`,
		"redis://127.0.0.1/0":                         `bad host "127.0.0.1"`,
		"redis://127.0.0.1:99999/0":                   "bad port",
		"redis://:6379/0":                             `bad host ":6379"`,
		"redis://127.0.0.1:1,127.0.0.1:2/0":           "one host expected",
		"redis://127.0.0.1:6379/0?pool_size=x":        "invalid pool_size number",
		"redis://127.0.0.1:6379/0?bogus=1":            "unexpected option: bogus",
		"redis://127.0.0.1:6379/db":                   "invalid database number",
		"redis+cluster://127.0.0.1:1,127.0.0.1:2/3":   "a cluster has no database number",
		"redis+cluster://127.0.0.1:1,127.0.0.1?x=1":   "invalid port",
		"redis+cluster://127.0.0.1:1,:2":              `bad host ":2"`,
		"redis+cluster://127.0.0.1:1?read_only=maybe": "read_only",
	}
	for raw, want := range cases {
		_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: raw}}})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "routecache: ") {
			t.Errorf("%s: error %v, want it to contain %q", raw, err, want)
		}
	}
	// A password never shows in an error.
	_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: "redis://u:hunter2@127.0.0.1/0"}}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password leaked or no error: %v", err)
	}
}

// countingHook counts commands sent and round trips (a pipeline is one).
type countingHook struct{ cmds, trips atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.cmds.Add(1)
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.cmds.Add(int64(len(cmds)))
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

// A hit on a Redis region is one round trip: one pipeline of a bounded
// GETRANGE of the entry and one of each of the region, key and tag
// counters (counted by a client hook on a cluster, by the backend's lean
// Loads and INFO commandstats on the standalone server).
func TestRedisHitIsOneRoundTrip(t *testing.T) {
	for name, u := range redisURLs(t) {
		t.Run(name, func(t *testing.T) {
			if name == "redis" {
				// The server's command counts are server-wide: a server
				// of this test's own, so no other test's commands (other
				// packages run at the same time) land in them.
				u = "redis://" + startRedisProc(t).addr() + "/0"
			}
			// A generous timeout: round trips are counted here, not timed,
			// and a hit that times out on a busy machine is a BYPASS.
			c := newBackendCache(t, withQuery(u, "timeout=30s"), core.RegionConfig{})
			rt, err := c.Route("r", core.Tags("item:{id}", "items"))
			if err != nil {
				t.Fatal(err)
			}
			hook := &countingHook{}
			rb := core.RegionBackend(c, "r").(*redisbe.Backend)
			rb.Client().AddHook(hook)
			p := mapParams{"id": "1"}
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "body") }
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("first: %q", w.Header().Get("X-Cache"))
			}
			var before map[string]int64
			if name == "redis" {
				before = commandStats(t, rb.Client())
			}
			hook.cmds.Store(0)
			hook.trips.Store(0)
			lean0 := rb.LeanLoads()
			const hits = 10
			for i := 0; i < hits; i++ {
				if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "HIT" || w.Body.String() != "body" {
					t.Fatalf("hit %d: %q %q", i, w.Header().Get("X-Cache"), w.Body.String())
				}
			}
			// A single node reads on its lean path (one write each, on
			// connections of its own: redis package tests), a cluster
			// through go-redis (the hook).
			lean := int64(rb.LeanLoads() - lean0)
			trips := hook.trips.Load() + lean
			t.Logf("%s: %d hits: %d round trips (%d on the lean path), %d go-redis commands", name, hits, trips, lean, hook.cmds.Load())
			if trips != hits {
				t.Fatalf("%d round trips for %d hits, want one each", trips, hits)
			}
			if name == "redis" {
				// The entry and its four counters (region, key, two tags):
				// five bounded GETRANGEs in one pipeline.
				const perHit = 5
				if lean != hits || hook.cmds.Load() != 0 {
					t.Fatalf("%d lean Loads and %d go-redis commands for %d hits, want every hit on the lean path", lean, hook.cmds.Load(), hits)
				}
				after := commandStats(t, rb.Client())
				if d := after["getrange"] - before["getrange"]; d != perHit*hits {
					t.Fatalf("server saw %d getrange for %d hits", d, hits)
				}
				for _, cmd := range []string{"get", "mget", "set", "incr"} {
					if d := after[cmd] - before[cmd]; d != 0 {
						t.Fatalf("server saw %d %s during hits", d, cmd)
					}
				}
			}
		})
	}
}

// commandStats reads calls per command from INFO commandstats.
func commandStats(t testing.TB, c redis.UniversalClient) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				out[name], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}

func TestRedisInvalidationDuringFill(t *testing.T) {
	for name, u := range redisURLs(t) {
		t.Run(name, func(t *testing.T) {
			c := newBackendCache(t, u, core.RegionConfig{})
			rt, err := c.Route("r", core.Tags("item:{id}"))
			if err != nil {
				t.Fatal(err)
			}
			p := mapParams{"id": "1"}
			var version, calls atomic.Int64
			entered, release := make(chan struct{}), make(chan struct{})
			h := func(w http.ResponseWriter, r *http.Request) {
				v := version.Load()
				if calls.Add(1) == 1 {
					close(entered)
					<-release
				}
				fmt.Fprint(w, v)
			}
			done := make(chan string)
			go func() { done <- serveOnce(rt, "/items/1", p, h).Body.String() }()
			<-entered
			version.Add(1)
			if err := c.InvalidateTags(context.Background(), "item:1"); err != nil {
				t.Fatal(err)
			}
			close(release)
			if b := <-done; b != "0" {
				t.Fatalf("first body %q", b)
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Body.String() != "1" || w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("after invalidation: %q %q", w.Header().Get("X-Cache"), w.Body.String())
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Body.String() != "1" || w.Header().Get("X-Cache") != "HIT" {
				t.Fatalf("refill: %q %q", w.Header().Get("X-Cache"), w.Body.String())
			}
			// Region and key invalidation, and a counter lost from the server.
			ctx := context.Background()
			if err := c.InvalidateRegion(ctx, "r"); err != nil {
				t.Fatal(err)
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "MISS" {
				t.Fatal("region invalidation not seen")
			}
			if err := c.InvalidateKey(ctx, "r", "/items/1"); err != nil {
				t.Fatal(err)
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "MISS" {
				t.Fatal("key invalidation not seen")
			}
			rb := core.RegionBackend(c, "r").(*redisbe.Backend)
			if err := rb.Client().Del(ctx, core.TagCounter(c, "r", "item:1")).Err(); err != nil {
				t.Fatal(err)
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Header().Get("X-Cache") != "MISS" {
				t.Fatal("entry served although its counter is gone")
			}
		})
	}
}

// Corrupt and truncated values under a live key are misses, then overwritten.
func TestRedisCorruptEntryIsAMiss(t *testing.T) {
	c := newBackendCache(t, redisURLs(t)["redis"], core.RegionConfig{})
	rt, _ := c.Route("r")
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fresh") }
	serveOnce(rt, "/x", noParams, h)
	rb := core.RegionBackend(c, "r").(*redisbe.Backend)
	ctx := context.Background()
	keys, err := rb.Client().Keys(ctx, core.RegionNamespace(c, "r")+"e:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("entry keys %v %v", keys, err)
	}
	good, _ := rb.Client().Get(ctx, keys[0]).Bytes()
	for i, bad := range [][]byte{[]byte("garbage"), good[:len(good)/2], {}, append(append([]byte{}, good[:10]...), 0xff)} {
		if err := rb.Client().Set(ctx, keys[0], bad, 0).Err(); err != nil {
			t.Fatal(err)
		}
		w := serveOnce(rt, "/x", noParams, h)
		if w.Header().Get("X-Cache") != "MISS" || w.Body.String() != "fresh" {
			t.Fatalf("case %d: %q %q", i, w.Header().Get("X-Cache"), w.Body.String())
		}
		if w := serveOnce(rt, "/x", noParams, h); w.Header().Get("X-Cache") != "HIT" {
			t.Fatalf("case %d: not overwritten", i)
		}
	}
	// One count per corrupt value read: the fill's re-check of the same
	// value does not count it again. The empty value is read as absent
	// (GETRANGE answers "" for a missing key): a miss, overwritten as well,
	// but not counted.
	if st := c.Stats()["r"]; st.Corrupt != 3 {
		t.Fatalf("corrupt count %d, want 3", st.Corrupt)
	}
}

// Regions naming the same URL share one client.
func TestRedisSharedClient(t *testing.T) {
	u := redisURLs(t)["redis"]
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: u}, "b": {Backend: u}, "c": {Backend: u + "?timeout=1s"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if core.RegionBackend(c, "a") != core.RegionBackend(c, "b") || core.RegionBackend(c, "a") == core.RegionBackend(c, "c") {
		t.Fatal("same URL should share a backend, different URLs not")
	}
}
