package redis

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/redis/go-redis/v9"
)

// Connections killed by the server while Loads run (CLIENT KILL of every
// normal client, again and again) never make a Load answer another key's
// entry or counter: each Load answers its own key, or fails.
func TestLeanClientKillNeverMixesAnswers(t *testing.T) {
	s := startPrivateRedis(t)
	b := openURL(t, "redis://"+s.addr()+"/0?timeout=2s&pool_size=8")
	ctx := context.Background()
	const keys = 16
	type fixture struct {
		key, name string
		val       uint64
	}
	fx := make([]fixture, keys)
	for i := range fx {
		f := &fx[i]
		f.key, f.name, f.val = fmt.Sprintf("e:%d", i), fmt.Sprintf("v:%d", i), uint64(7000+i)
		if err := b.client.Set(ctx, f.name, f.val, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if err := b.Store(ctx, f.key, testEntry(f.key, backend.CounterSnap{Name: f.name, Value: f.val}), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	load(b, fx[0].key, nil) // go-redis checks the server first
	admin := redis.NewClient(&redis.Options{Addr: s.addr(), Protocol: 2})
	defer admin.Close()
	stop := make(chan struct{})
	var kills atomic.Int64
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// SKIPME yes: the admin connection survives.
			if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err == nil {
				kills.Add(1)
			}
			time.Sleep(time.Millisecond) // pacing, not waiting
		}
	}()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := []uint64{0}
			for i := range 150 {
				f := fx[(g*7+i)%keys]
				vals[0] = 0
				e, err := b.Load(ctx, f.key, []string{f.name}, vals)
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				if m := misread(e, vals[0], f.key, "", f.val); m != "" {
					t.Errorf("Load(%s) %s", f.key, m)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	killer.Wait()
	t.Logf("%d Loads answered (%d lean), %d failed, %d kills", ok.Load(), b.LeanLoads(), failed.Load(), kills.Load())
	if b.LeanLoads() == 0 {
		t.Fatal("no Load took the lean path")
	}
}

// The lean pool and go-redis's together keep the server's connections
// bounded by pool_size: a burst of concurrent Loads on a backend of
// pool_size=4 leaves at most 2*4 of ours (go-redis's pool and the lean
// idle list each hold at most pool_size), whatever the burst.
func TestLeanConnectionsBoundedByPoolSize(t *testing.T) {
	s := startPrivateRedis(t)
	u, _ := url.Parse("redis://" + s.addr() + "/0?timeout=2s&pool_size=4")
	b, err := openRedis(u, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	load(b, "k", nil)
	admin := redis.NewClient(&redis.Options{Addr: s.addr(), Protocol: 2})
	defer admin.Close()
	var peak atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := b.Load(ctx, fmt.Sprintf("k%d", i), []string{"c1", "c2"}, make([]uint64, 2)); err != nil {
					t.Errorf("Load: %v", err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		list, err := admin.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := int64(strings.Count(strings.TrimSpace(list), "\n")) // all but the admin's
		if n > peak.Load() {
			peak.Store(n)
		}
		select {
		case <-done:
			t.Logf("peak %d connections, %d lean Loads", peak.Load(), b.LeanLoads())
			if peak.Load() > 8 {
				t.Fatalf("%d connections at once for pool_size=4", peak.Load())
			}
			return
		default:
		}
	}
}

// trickleConn hands its reader at most a few bytes per Read, so that every
// reply is read across many partial reads (lines, lengths, CRLFs and
// values cut anywhere).
type trickleConn struct {
	net.Conn
	n atomic.Uint64
}

func (c *trickleConn) Read(p []byte) (int, error) {
	k := int(c.n.Add(1)%3) + 1
	if len(p) > k {
		p = p[:k]
	}
	return c.Conn.Read(p)
}

// Replies read a few bytes at a time answer as whole ones: entries of
// every size, missing entries, counters of every length, WRONGTYPE and
// foreign counters, on connections reused from Load to Load.
func TestLeanPartialReadsAnswerAsWholeReplies(t *testing.T) {
	b := openTest(t, "&pool_size=2")
	b.BoundEntries(1 << 20)
	b.lean.dialHook = func(c net.Conn) net.Conn { return &trickleConn{Conn: c} }
	ctx := context.Background()
	ns := fmt.Sprintf("rctest:leantrickle:%x:", backend.FreshCounter())
	wrong := ns + "list"
	if err := b.client.RPush(ctx, wrong, "x").Err(); err != nil {
		t.Fatal(err)
	}
	foreign := ns + "foreign"
	if err := b.client.Set(ctx, foreign, strings.Repeat("9", 100), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var names []string
	for i := 0; i < 8; i++ {
		key, name := fmt.Sprintf("%se:%d", ns, i), fmt.Sprintf("%sv:%d", ns, i)
		val := uint64(1)
		for j := 0; j < i*3; j++ {
			val = val*10 + uint64(j%10)
		}
		if i == 7 {
			val = 18446744073709551615
		}
		if err := b.client.Set(ctx, name, val, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		e := testEntry(key, backend.CounterSnap{Name: name, Value: val})
		e.Body = []byte(strings.Repeat(string(rune('a'+i)), i*i*997))
		e.Prepare()
		if err := b.Store(ctx, key, e, time.Minute); err != nil {
			t.Fatal(err)
		}
		keys, names = append(keys, key), append(names, name)
	}
	keys = append(keys, ns+"absent", wrong)
	load(b, keys[0], nil) // go-redis checks the server first
	for round := 0; round < 3; round++ {
		for i, key := range keys {
			ns := []string{names[i%len(names)], wrong, foreign, names[(i+3)%len(names)]}
			if got, want := load(b, key, ns), load(viaGoRedis(b), key, ns); got != want {
				t.Fatalf("round %d, %s: lean %+v, go-redis %+v", round, key, got, want)
			}
		}
	}
	if b.LeanLoads() == 0 {
		t.Fatal("no Load took the lean path")
	}
}

// A server restored from a snapshot taken before an invalidation (its
// region counter back at the value the invalidation moved on from) is
// never read on the lean path before the restart check has reset the
// counter: while Loads run on every goroutine through the crash and the
// restart, none reads the snapshot's value.
func TestLeanNeverReadsARestoredSnapshotBeforeTheCheck(t *testing.T) {
	dir := t.TempDir()
	s := startPrivateRedis(t, "--dir", dir, "--dbfilename", "snap.rdb")
	b := openURL(t, "redis://"+s.addr()+"/0?timeout=2s&pool_size=8")
	ctx := context.Background()
	region := "rctest:lean:snapregion"
	b.Prepare([]backend.RegionCounters{{Counters: []string{region}}})
	vals := []uint64{0}
	if err := b.Ensure(ctx, []string{region}, vals); err != nil {
		t.Fatal(err)
	}
	old := vals[0]
	key := "rctest:lean:snap"
	if err := b.Store(ctx, key, testEntry(key, backend.CounterSnap{Name: region, Value: old}), time.Hour); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: s.addr(), Protocol: 2})
	defer admin.Close()
	if err := admin.Save(ctx).Err(); err != nil { // the snapshot: counter at old
		t.Fatal(err)
	}
	if err := b.Bump(ctx, region); err != nil { // the invalidation completes
		t.Fatal(err)
	}
	if r := load(b, key, []string{region}); r.vals == fmt.Sprint([]uint64{old}) {
		t.Fatal("the Bump did not move the counter")
	}
	var stale, ok atomic.Int64
	var crashed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := []uint64{0}
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := crashed.Load()
				if _, err := b.Load(ctx, key, []string{region}, v); err == nil {
					ok.Add(1)
					if after && v[0] == old {
						stale.Add(1)
					}
				}
			}
		}()
	}
	for ok.Load() < 200 {
		runtime.Gosched()
	}
	crashed.Store(true)
	s.kill()
	s.start() // loads snap.rdb: the counter at old, the marker of the old run_id
	base := ok.Load()
	for ok.Load() < base+2000 {
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	t.Logf("%d Loads, %d lean; resets %d", ok.Load(), b.LeanLoads(), b.guard.resets.Load())
	if stale.Load() > 0 {
		t.Fatalf("%d Loads read the restored snapshot's counter before the restart check reset it", stale.Load())
	}
	if b.guard.resets.Load() == 0 {
		t.Fatal("the restart check reset nothing")
	}
}
