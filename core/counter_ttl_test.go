package core_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	memcachebe "github.com/routecache/routecache/core/backend/memcache"
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/redis/go-redis/v9"
)

// keyTTL is one stored key and its remaining lifetime (-1: none).
type keyTTL struct {
	key string
	ttl time.Duration
}

// redisKeysUnder lists the keys containing "<prefix>:" and their PTTL, on
// every master of a cluster.
func redisKeysUnder(t *testing.T, c redis.UniversalClient, prefix string) []keyTTL {
	t.Helper()
	var mu sync.Mutex
	var out []keyTTL
	scan := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, "*"+prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		pipe := node.Pipeline()
		cmds := make([]*redis.DurationCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.PTTL(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && len(keys) > 0 {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for i, k := range keys {
			d := cmds[i].Val()
			if d == -2 { // gone since the scan
				continue
			}
			out = append(out, keyTTL{k, d})
		}
		return nil
	}
	ctx := context.Background()
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		err = cc.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, cc)
	default:
		t.Fatalf("client %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// memcacheKeysUnder lists the items whose key contains "<prefix>:" with
// their remaining lifetime (-1: none), from lru_crawler metadump on every
// server.
func memcacheKeysUnder(t *testing.T, addrs, prefix string) []keyTTL {
	t.Helper()
	var out []keyTTL
	now := time.Now().Unix()
	for _, addr := range strings.Split(addrs, ",") {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := fmt.Fprint(conn, "lru_crawler metadump all\r\n"); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "END" {
				break
			}
			if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "BUSY") {
				t.Fatalf("metadump on %s: %s", addr, line)
			}
			var key string
			exp := int64(-2)
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "key":
					key, _ = url.QueryUnescape(v)
				case "exp":
					exp, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			if !strings.Contains(key, prefix+":") {
				continue
			}
			ttl := time.Duration(-1)
			if exp > 0 {
				ttl = time.Duration(exp-now) * time.Second
			}
			out = append(out, keyTTL{key, ttl})
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	return out
}

// counterPaths is how many distinct paths TestCountersExpire sends
// (ROUTECACHE_TEST_COUNTER_PATHS to measure with more).
func counterPaths(t *testing.T) int {
	if v := os.Getenv("ROUTECACHE_TEST_COUNTER_PATHS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("ROUTECACHE_TEST_COUNTER_PATHS=%q", v)
		}
		return n
	}
	return 300
}

// Every distinct path and request-derived tag creates counters: none may
// be left without a lifetime (404s included), and no counter may expire
// before an entry depending on it (its lifetime covers the entry's whole
// TTL + Stale). Soft marks expire too.
func TestCountersExpire(t *testing.T) {
	urls := redisURLs(t)
	urls["memcache"] = "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE")
	for name, base := range urls {
		t.Run(name, func(t *testing.T) {
			rc := core.RegionConfig{TTL: time.Minute, Stale: 30 * time.Second, SoftInvalidation: true}
			c := newBackendCache(t, withQuery(base, "timeout=2s"), rc)
			prefix := core.RegionPrefix(c, "r")
			rt, err := c.Route("r", core.Tags("p:{path}", "all"))
			if err != nil {
				t.Fatal(err)
			}
			h := func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "7") {
					http.NotFound(w, r)
					return
				}
				fmt.Fprint(w, r.URL.Path)
			}
			n := counterPaths(t)
			for i := 0; i < n; i++ {
				serveOnce(rt, fmt.Sprintf("/p/%d", i), noParams, h)
			}
			ctx := context.Background()
			for i := 0; i < 10; i++ {
				if err := c.InvalidateTags(ctx, fmt.Sprintf("never-used:%d", i)); err != nil {
					t.Fatal(err)
				}
				if err := c.InvalidateKey(ctx, "r", fmt.Sprintf("/never/%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.InvalidateTagsSoft(ctx, "p:/p/1"); err != nil {
				t.Fatal(err)
			}
			serveOnce(rt, "/p/2", noParams, h) // an entry stored after the bumps
			var keys []keyTTL
			if name == "memcache" {
				keys = memcacheKeysUnder(t, testServer(t, "ROUTECACHE_TEST_MEMCACHE"), prefix)
			} else {
				keys = redisKeysUnder(t, core.RegionBackend(c, "r").(*redisbe.Backend).Client(), prefix)
			}
			var forever []string
			var entryMax, counterMin time.Duration
			counters := 0
			counterMin = 1 << 62
			for _, k := range keys {
				switch {
				case strings.Contains(k.key, ":v:r:") && strings.Contains(k.key, ":epoch"):
					// A restart marker: one per region and node, kept
					// (an expired one would reset the region's counters).
				case k.ttl < 0:
					forever = append(forever, k.key)
				case strings.HasPrefix(k.key, prefix+":e:"):
					entryMax = max(entryMax, k.ttl)
				case strings.HasPrefix(k.key, prefix+":v:"), strings.HasPrefix(k.key, "s|"):
					counters++
					counterMin = min(counterMin, k.ttl)
				}
			}
			t.Logf("%s: %d paths: %d keys under the prefix, %d without a lifetime; %d counters and marks, shortest lifetime %v; longest entry lifetime %v",
				name, n, len(keys), len(forever), counters, counterMin, entryMax)
			if len(forever) > 0 {
				t.Fatalf("%d of %d keys have no lifetime, e.g. %q", len(forever), len(keys), forever[:min(3, len(forever))])
			}
			if counters < n || entryMax == 0 {
				t.Fatalf("%d counters, longest entry %v: the scan missed keys", counters, entryMax)
			}
			if counterMin < entryMax {
				t.Fatalf("a counter expires in %v, before an entry that may depend on it (%v)", counterMin, entryMax)
			}
		})
	}
}

// Storing an entry renews the lifetime of every counter it recorded: a
// counter whose lifetime ran short (created long ago, or shortened by an
// instance with shorter TTLs) is pushed back past the new entry's.
func TestCounterRenewedOnStore(t *testing.T) {
	urls := redisURLs(t)
	urls["memcache"] = "memcache://" + testServer(t, "ROUTECACHE_TEST_MEMCACHE")
	for name, base := range urls {
		t.Run(name, func(t *testing.T) {
			c := newBackendCache(t, withQuery(base, "timeout=2s"), core.RegionConfig{TTL: time.Hour})
			rt, _ := c.Route("r", core.Tags("shared"))
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "x") }
			serveOnce(rt, "/a", noParams, h)
			ctx := context.Background()
			tag := core.TagCounter(c, "r", "shared")
			// Shorten the tag counter's lifetime to 30 s.
			ttlOf := func() time.Duration {
				if name == "memcache" {
					for _, k := range memcacheKeysUnder(t, testServer(t, "ROUTECACHE_TEST_MEMCACHE"), core.RegionPrefix(c, "r")) {
						if k.key == tag {
							return k.ttl
						}
					}
					return -2
				}
				return core.RegionBackend(c, "r").(*redisbe.Backend).Client().PTTL(ctx, tag).Val()
			}
			if name == "memcache" {
				if err := core.RegionBackend(c, "r").(*memcachebe.Backend).Client().Touch(tag, 30); err != nil {
					t.Fatal(err)
				}
			} else if err := core.RegionBackend(c, "r").(*redisbe.Backend).Client().PExpire(ctx, tag, 30*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
			if d := ttlOf(); d <= 0 || d > 31*time.Second {
				t.Fatalf("tag counter lifetime %v after shortening it", d)
			}
			// Another path, same tag: its store renews the counter.
			if w := serveOnce(rt, "/b", noParams, h); w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("/b: %s", w.Header().Get("X-Cache"))
			}
			if d := ttlOf(); d < time.Hour {
				t.Fatalf("tag counter lifetime %v after a dependent entry was stored, want at least the entry's (1h)", d)
			}
		})
	}
}
