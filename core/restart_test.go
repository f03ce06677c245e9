package core_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core"
)

// startRedisPersistent starts a private redis-server whose SAVE writes an
// RDB in a directory of its own, loaded again when it is restarted.
// cluster makes it a one-node cluster holding every slot.
func startRedisPersistent(t *testing.T, cluster bool) *serverProc {
	requireBinary(t, "redis-server")
	dir := t.TempDir()
	s := &serverProc{t: t, kind: "redis", port: freePort(t), extra: []string{"--dir", dir}}
	if cluster {
		if redisMajor(t) < 7 {
			t.Skip("redis-server < 7: no --cluster-port")
		}
		s.extra = append(s.extra, "--cluster-enabled", "yes", "--cluster-port", freePort(t),
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"))
	}
	s.start()
	t.Cleanup(s.kill)
	if cluster {
		admin := redis.NewClient(&redis.Options{Addr: s.addr()})
		defer admin.Close()
		if err := admin.Do(context.Background(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
			t.Fatal(err)
		}
		waitClusterOK(t, s)
	}
	return s
}

func waitClusterOK(t *testing.T, s *serverProc) {
	t.Helper()
	admin := redis.NewClient(&redis.Options{Addr: s.addr()})
	defer admin.Close()
	waitFor(t, "cluster_state:ok", func() bool {
		info, err := admin.ClusterInfo(context.Background()).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
}

// A Redis restored from a snapshot (here: SAVE, an invalidation, kill -9,
// restart from the RDB) holds the counters and entries of the snapshot:
// an invalidation acknowledged after it is lost, and before restarts were
// detected 97/97 reads on a plain and on a near Cache were "HIT rev 1".
// No read after the restart may serve rev 1: not on the Caches that were
// connected across the restart (plain and near), and not on a Cache built
// after it (a fresh process, which never saw the old server).
func TestRedisRestoredSnapshotServesNoOldEntries(t *testing.T) {
	for _, kind := range []string{"redis", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			srv := startRedisPersistent(t, kind == "cluster")
			url := "redis://" + srv.addr() + "/0?timeout=500ms"
			if kind == "cluster" {
				url = "redis+cluster://" + srv.addr() + "?timeout=500ms"
			}
			sep := "?"
			if strings.Contains(url, "?") {
				sep = "&"
			}
			prefix := uniquePrefix(t)
			open := func(u string) *core.Cache {
				c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: u, Prefix: prefix, TTL: time.Hour}}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			plain, near := open(url), open(url+sep+"near_max_bytes=4MiB")
			var rev atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "rev %d", rev.Load()) }
			route := func(c *core.Cache) *core.Route {
				rt, err := c.Route("r", core.Tags("item:{id}"))
				if err != nil {
					t.Fatal(err)
				}
				return rt
			}
			p := mapParams{"id": "1"}
			rtPlain, rtNear := route(plain), route(near)
			hitWith := func(rt *core.Route, body string) {
				t.Helper()
				waitFor(t, "HIT "+body, func() bool {
					w := serveOnce(rt, "/items/1", p, h)
					return xc(w) == "HIT" && w.Body.String() == body
				})
			}

			rev.Store(1)
			hitWith(rtPlain, "rev 1")
			hitWith(rtNear, "rev 1")
			admin := redis.NewClient(&redis.Options{Addr: srv.addr()})
			defer admin.Close()
			ctx := context.Background()
			if err := admin.Save(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			rev.Store(2)
			if err := near.InvalidateTags(ctx, "item:1"); err != nil { // near publishes; plain reads through
				t.Fatal(err)
			}
			hitWith(rtPlain, "rev 2")
			hitWith(rtNear, "rev 2")

			srv.kill()
			srv.start() // same port, same directory: loads the RDB of the SAVE
			if kind == "cluster" {
				waitClusterOK(t, srv)
			}
			if n, err := admin.DBSize(ctx).Result(); err != nil || n == 0 {
				t.Fatalf("the restarted server did not load the snapshot: %d keys, %v", n, err)
			}
			fresh := open(url) // built after the restart: never saw the old server
			rtFresh := route(fresh)

			const reads = 97
			for _, c := range []struct {
				name string
				rt   *core.Route
			}{{"plain", rtPlain}, {"near", rtNear}, {"fresh", rtFresh}} {
				stale, served, attempts := 0, 0, 0
				xcache := map[string]int{}
				for served < reads && attempts < 50*reads {
					attempts++
					w := serveOnce(c.rt, "/items/1", p, h)
					if xc(w) == "BYPASS" { // reconnecting (breaker): not an answer from the cache
						time.Sleep(5 * time.Millisecond)
						continue
					}
					served++
					xcache[xc(w)]++
					if w.Body.String() == "rev 1" {
						stale++
					}
				}
				t.Logf("%s %s after the restore: %d reads, %d served rev 1, X-Cache %v", kind, c.name, served, stale, xcache)
				if served < reads {
					t.Fatalf("%s: only %d of %d reads used the cache after the restart", c.name, served, reads)
				}
				if stale != 0 {
					t.Errorf("%s: %d of %d reads served rev 1, invalidated before the restart", c.name, stale, served)
				}
			}
		})
	}
}
