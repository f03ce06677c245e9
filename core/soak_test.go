package core_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// The soak: several Caches on private Redis and Memcached servers, readers
// and a writer running together while faults are injected (CLIENT PAUSE,
// the pub/sub connections killed, kill -9 and restart, a restore from an
// RDB snapshot, a memcached restart). It counts reads older than an
// invalidation that had completed (returned nil) before the read started,
// beyond each Cache's documented allowance: none for a Cache without a near
// cache, the pub/sub hop for a Redis near cache, near_staleness for a
// Memcached one. The test command runs a short form; ROUTECACHE_SOAK=2m
// runs it for that long.

// soakHop bounds how late a near cache may learn of an invalidation (the
// pub/sub hop, or near_staleness), on a loaded machine.
const soakHop = 5 * time.Second

type soakNode struct {
	name  string
	group string // caches of one group share a backend and prefix
	c     *core.Cache
	rt    *core.Route
	allow time.Duration
}

// soakLedger records, per group and item, the versions whose invalidation
// completed and when.
type soakLedger struct {
	mu   sync.Mutex
	done map[string][]soakDone
}

type soakDone struct {
	version int64
	at      time.Time
}

func (l *soakLedger) complete(group string, id int, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := fmt.Sprint(group, "/", id)
	l.done[k] = append(l.done[k], soakDone{v, time.Now()})
}

// required is the newest version whose invalidation completed allow
// before start.
func (l *soakLedger) required(group string, id int, start time.Time, allow time.Duration) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v int64
	for _, d := range l.done[fmt.Sprint(group, "/", id)] {
		if !d.at.Add(allow).After(start) && d.version > v {
			v = d.version
		}
	}
	return v
}

func TestSoakNoReadOlderThanACompletedInvalidation(t *testing.T) {
	dur := 4 * time.Second
	if v := os.Getenv("ROUTECACHE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ROUTECACHE_SOAK: %v", err)
		}
		dur = d
	}
	rs := startRedisPersistent(t, false)
	ms := startMemcachedProc(t)
	const items = 8
	var db [items]atomic.Int64
	handler := func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		fmt.Fprint(w, db[id].Load())
	}
	rc := core.RegionConfig{Prefix: uniquePrefix(t), TTL: time.Minute, LeaseWait: 5 * time.Second, FillTimeout: 10 * time.Second}
	redisURL := "redis://" + rs.addr() + "/0?timeout=2s"
	mcURL := "memcache://" + ms.addr() + "?timeout=2s"
	var nodes []*soakNode
	add := func(name, group, url string, allow time.Duration) *soakNode {
		c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: rc.Prefix, TTL: rc.TTL, LeaseWait: rc.LeaseWait, FillTimeout: rc.FillTimeout}}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rt, err := c.Route("r", core.Tags("item:{id}"))
		if err != nil {
			t.Fatal(err)
		}
		n := &soakNode{name: name, group: group, c: c, rt: rt, allow: allow}
		nodes = append(nodes, n)
		return n
	}
	redisPlain := add("redis", "redis", redisURL, 0)
	add("redis-near", "redis", redisURL+"&near_max_bytes=4MiB", soakHop)
	add("redis-2", "redis", redisURL, 0)
	mcPlain := add("memcache", "memcache", mcURL, 0)
	add("memcache-near", "memcache", mcURL+"&near_max_bytes=4MiB&near_staleness=200ms", 200*time.Millisecond+soakHop)

	ledger := &soakLedger{done: map[string][]soakDone{}}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var reads, stale, completed atomic.Int64
	var wg sync.WaitGroup
	var firstStale atomic.Pointer[string]

	// Readers.
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				n := nodes[(g+i)%len(nodes)]
				id := (g*7 + i) % items
				start := time.Now()
				req := httptest.NewRequest("GET", fmt.Sprintf("/items/%d", id), nil)
				req.SetPathValue("id", strconv.Itoa(id))
				w := httptest.NewRecorder()
				_ = adapter.ServeRoute(n.rt, w, req, adapter.PathValues{R: req}, "GET /items/{id}", func(w http.ResponseWriter, r *http.Request) error {
					handler(w, r)
					return nil
				})
				got, err := strconv.ParseInt(w.Body.String(), 10, 64)
				if err != nil {
					continue // a shared failure during a fault: not a read of the item
				}
				reads.Add(1)
				if lat := time.Since(start); lat > time.Second && os.Getenv("SOAK_DEBUG") != "" {
					fmt.Printf("slow read %v on %s item %d: %s %s\n", lat, n.name, id, w.Header().Get("X-Cache"), w.Header().Get("Cache-Status"))
				}
				if want := ledger.required(n.group, id, start, n.allow); got < want {
					stale.Add(1)
					msg := fmt.Sprintf("%s item %d: version %d (%s), an invalidation up to %d had completed", n.name, id, got, w.Header().Get("X-Cache"), want)
					firstStale.CompareAndSwap(nil, &msg)
				}
			}
		}(g)
	}
	// The writer: each change is invalidated through a plain Cache of
	// each group; a nil return completes it.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			id := i % items
			v := db[id].Add(1)
			for _, n := range []*soakNode{redisPlain, mcPlain} {
				if err := n.c.InvalidateTags(context.Background(), fmt.Sprintf("item:%d", id)); err == nil {
					ledger.complete(n.group, id, v)
					if n == redisPlain {
						completed.Add(1)
					}
				}
			}
			time.Sleep(5 * time.Millisecond) // pacing, not synchronisation
		}
	}()

	// Faults, spread over the run.
	admin := redis.NewClient(&redis.Options{Addr: rs.addr()})
	defer admin.Close()
	step := dur / 6
	pause := func() { time.Sleep(step) }
	faults := []struct {
		name string
		run  func()
	}{
		{"CLIENT PAUSE", func() { _ = admin.Do(context.Background(), "CLIENT", "PAUSE", 300).Err() }},
		{"pub/sub connections killed", func() { _ = admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err() }},
		{"snapshot restore", func() {
			if err := admin.Save(context.Background()).Err(); err != nil {
				t.Errorf("SAVE: %v", err)
				return
			}
			// Invalidations completed after the snapshot are what the
			// restore undoes.
			after := completed.Load() + 3
			waitFor(t, "invalidations after the snapshot", func() bool { return completed.Load() >= after })
			rs.kill()
			rs.start()
		}},
		{"redis kill -9", func() { rs.kill(); rs.start() }},
		{"memcached kill -9", func() { ms.kill(); ms.start() }},
	}
	for _, f := range faults {
		pause()
		t.Logf("fault: %s (reads so far %d, stale %d)", f.name, reads.Load(), stale.Load())
		f.run()
	}
	pause()
	stop()
	wg.Wait()
	t.Logf("%d checked reads over %v, %d older than a completed invalidation (allowance: 0 plain, %v near)", reads.Load(), dur, stale.Load(), soakHop)
	if s := stale.Load(); s != 0 {
		t.Fatalf("%d stale reads; first: %s", s, *firstStale.Load())
	}
	if reads.Load() < 100 {
		t.Fatalf("only %d reads: the soak checked nothing", reads.Load())
	}
}
