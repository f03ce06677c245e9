package core_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend"

	"github.com/redis/go-redis/v9"
)

// plantClient is a client of its own for planting values, with timeouts
// generous enough to write 64 MiB on a busy machine (the cache's client
// keeps the cache's timeout).
func plantClient(t *testing.T, cluster bool) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:       strings.Split(testServer(t, "ROUTECACHE_TEST_REDIS_CLUSTER"), ","),
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		})
	} else {
		c = redis.NewClient(&redis.Options{
			Addr:        testServer(t, "ROUTECACHE_TEST_REDIS"),
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		})
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// netOutput sums INFO stats' total_net_output_bytes over every server the
// client talks to: the bytes the servers sent to their clients.
func netOutput(t *testing.T, c redis.UniversalClient) int64 {
	t.Helper()
	ctx := context.Background()
	var total atomic.Int64
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "stats").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_net_output_bytes:"); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return err
				}
				total.Add(n)
				return nil
			}
		}
		return fmt.Errorf("no total_net_output_bytes in INFO stats")
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, read)
	case *redis.Client:
		err = read(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return total.Load()
}

// A value that cannot be an entry — 64 MiB of junk, or a list where a
// string belongs (WRONGTYPE) — planted under one entry key is that key's
// corrupt entry: the lookup reads a bounded prefix of it, counts it as
// Corrupt, serves the handler's response and overwrites it with a valid
// entry. It is not a backend error: the breaker (opened here by a single
// failure) stays closed and other keys keep hitting.
// hostileCache is a Cache on url whose breaker opens at the first backend
// error, so that one planted value counted as a failure would show as
// every other key bypassing; bodies are capped at 64 KiB.
func hostileCache(t *testing.T, url string) (*core.Cache, *core.Region, *core.Route) {
	t.Helper()
	rc := core.RegionConfig{Backend: url, Prefix: uniquePrefix(t), MaxEntryBytes: 64 << 10}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Breaker: core.BreakerConfig{Failures: 1, Cooldown: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	return c, rt.Region(), rt
}

func TestOversizedValueIsCorruptNotOutage(t *testing.T) {
	const planted = 64 << 20
	for name, u := range redisURLs(t) {
		t.Run(name, func(t *testing.T) {
			pc := plantClient(t, name == "cluster")
			// A generous timeout: what bounds the read is the entry size
			// limit, checked below by the bytes the servers sent.
			u := withQuery(u, "timeout=5s")
			_, r, rt := hostileCache(t, u)
			var calls atomic.Int64
			h := func(w http.ResponseWriter, req *http.Request) {
				fmt.Fprintf(w, "%s #%d", req.URL.Path, calls.Add(1))
			}
			skeyOf := func(id string) string {
				return core.StorageKey(rt, newGet("/items/"+id), mapParams{"id": id}, "/items/:id")
			}
			hit := func(id, want string) {
				t.Helper()
				w := serveOnce(rt, "/items/"+id, mapParams{"id": id}, h)
				if got := w.Header().Get("X-Cache"); got != want {
					t.Fatalf("/items/%s: X-Cache %q, want %q (body %q, stats %+v)", id, got, want, w.Body.String(), r.Stats())
				}
			}
			ctx := context.Background()
			for _, id := range []string{"1", "2"} {
				hit(id, "MISS")
				hit(id, "HIT")
			}
			k1 := skeyOf("1")
			t.Cleanup(func() { pc.Del(context.Background(), k1) })

			plants := []struct {
				what  string
				plant func() error
			}{
				{"64 MiB of junk", func() error { return pc.Set(ctx, k1, strings.Repeat("x", planted), 0).Err() }},
				// Passes the magic and version check; only the length and
				// the checksum can refuse it.
				{"64 MiB behind an envelope header", func() error {
					return pc.Set(ctx, k1, "RCE\x01"+strings.Repeat("\x00", planted), 0).Err()
				}},
				{"a list (WRONGTYPE)", func() error {
					if err := pc.Del(ctx, k1).Err(); err != nil {
						return err
					}
					return pc.RPush(ctx, k1, "a", "b", "c").Err()
				}},
				{"a hash (WRONGTYPE)", func() error {
					if err := pc.Del(ctx, k1).Err(); err != nil {
						return err
					}
					return pc.HSet(ctx, k1, "f", strings.Repeat("y", 1<<20)).Err()
				}},
			}
			for i, p := range plants {
				if err := p.plant(); err != nil {
					t.Fatalf("%s: plant: %v", p.what, err)
				}
				before, out0 := r.Stats(), netOutput(t, pc)
				// The planted key: a corrupt entry, served by the handler
				// and overwritten by its fill.
				w := serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)
				if got := w.Header().Get("X-Cache"); got != "MISS" || !strings.HasPrefix(w.Body.String(), "/items/1 #") {
					t.Fatalf("%s: planted key: X-Cache %q, body %q, stats %+v", p.what, got, w.Body.String(), r.Stats())
				}
				sent := netOutput(t, pc) - out0
				after := r.Stats()
				t.Logf("%s: the servers sent %d bytes for the lookup and fill of the planted key", p.what, sent)
				// The count is the servers', so other tests' traffic on
				// them adds to it (9 MiB seen beside the other packages);
				// an unbounded read would send all of the planted value.
				if sent > planted/2 {
					t.Errorf("%s: the servers sent %d bytes for one request: the read of the planted value is not bounded", p.what, sent)
				}
				if after.Corrupt != before.Corrupt+1 || after.Errors != before.Errors {
					t.Fatalf("%s: corrupt %d -> %d, errors %d -> %d: want one corrupt value and no backend error",
						p.what, before.Corrupt, after.Corrupt, before.Errors, after.Errors)
				}
				if after.Breaker != core.BreakerClosed || after.BreakerOpens != 0 {
					t.Fatalf("%s: breaker %s (opened %d times), want closed", p.what, after.Breaker, after.BreakerOpens)
				}
				// The other key still hits; the planted one was repaired.
				hit("2", "HIT")
				hit("1", "HIT")
				typ, err := pc.Type(ctx, k1).Result()
				if err != nil || typ != "string" {
					t.Fatalf("%s: after the fill the key is a %q (%v), want a string", p.what, typ, err)
				}
				v, err := pc.Get(ctx, k1).Result()
				if err != nil {
					t.Fatal(err)
				}
				e, err := backend.DecodeString(v)
				if err != nil || !strings.HasPrefix(string(e.Body), "/items/1 #") {
					t.Fatalf("%s: after the fill the key holds %d bytes that are no entry of /items/1 (%v)", p.what, len(v), err)
				}
				if st := r.Stats(); st.Errors != 0 || st.Corrupt != uint64(i+1) || st.Breaker != core.BreakerClosed {
					t.Fatalf("%s: stats %+v", p.what, st)
				}
			}
		})
	}
}

// An entry larger than a lookup would read (the body cap plus the
// allowance for headers, key and counters) is refused when stored, as too
// large: stored, it would read back as corrupt on every request.
func TestEntryOverReadBoundIsNotStored(t *testing.T) {
	for name, u := range redisURLs(t) {
		t.Run(name, func(t *testing.T) {
			c := newBackendCache(t, u, core.RegionConfig{MaxEntryBytes: 1 << 10})
			rt, _ := c.Route("r")
			big := strings.Repeat("h", backend.EntryAllowance+2<<10) // the allowance plus more than the body cap
			h := func(w http.ResponseWriter, req *http.Request) {
				w.Header().Set("X-Big", big)
				fmt.Fprint(w, "small body")
			}
			for i := 0; i < 2; i++ {
				if w := serveOnce(rt, "/items/1", mapParams{"id": "1"}, h); w.Header().Get("X-Cache") != "MISS" {
					t.Fatalf("request %d: X-Cache %q", i, w.Header().Get("X-Cache"))
				}
			}
			st := c.Stats()["r"]
			if st.NotStored[core.NotStoredTooLarge] != 2 || st.Stores != 0 || st.Corrupt != 0 || st.Errors != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
