package memcache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// Tests of the Memcached backend alone; those that need a Cache are in
// core's backend_memcache_test.go.

func mcAddrs(t testing.TB) []string {
	return strings.Split(backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE"), ",")
}

func mcURL(addrs []string, query string) string {
	if !strings.Contains(query, "timeout=") {
		if query != "" {
			query += "&"
		}
		query += "timeout=2s"
	}
	return "memcache://" + strings.Join(addrs, ",") + "?" + query
}

func mcPrefix() string { return fmt.Sprintf("mc%d", backend.FreshCounter()%1e12) }

func mcOpen(t testing.TB, raw string) *Backend {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openMemcache(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func mcEntry(key string, body []byte, counters ...backend.CounterSnap) *backend.Entry {
	now := time.Now().UnixNano()
	e := &backend.Entry{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: body,
		Created: now, FreshUntil: now + int64(time.Minute), StaleUntil: now + int64(time.Minute),
		ETag: `"e"`, Key: key, Counters: counters,
	}
	e.Prepare()
	return e
}

// load returns the entry and every counter from one GetMulti; missing
// counters read 0, a missing entry is nil.
func TestMemcacheLoad(t *testing.T) {
	addrs := mcAddrs(t)
	b := mcOpen(t, mcURL(addrs, ""))
	ctx := context.Background()
	p := mcPrefix()
	names := []string{p + ":v:r:r", p + ":v:k:r:/x", p + ":v:t:a", p + ":v:t:b"}
	vals := make([]uint64, len(names))
	if err := b.Counters(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != 0 {
			t.Fatalf("%s: fresh counter reads %d", names[i], v)
		}
	}
	if err := b.Ensure(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	snap := make([]backend.CounterSnap, len(names))
	for i, v := range vals {
		if v <= backend.BaseCounter {
			t.Fatalf("ensure created %s = %d", names[i], v)
		}
		snap[i] = backend.CounterSnap{Name: names[i], Value: v}
	}
	key := backend.EntryKey(p+":", "k")
	want := mcEntry("k", []byte("hello"), snap...)
	if err := b.Store(ctx, key, want, time.Minute); err != nil {
		t.Fatal(err)
	}
	got := make([]uint64, len(names)+1)
	e, err := b.Load(ctx, key, append(names, p+":v:t:missing"), got)
	if err != nil || e == nil {
		t.Fatalf("load: %v %v", e, err)
	}
	if e.Key != "k" || string(e.Body) != "hello" || e.ETag != want.ETag || len(e.Counters) != len(names) || e.Counters[2] != snap[2] {
		t.Fatalf("loaded %+v", e)
	}
	for i := range names {
		if got[i] != vals[i] {
			t.Fatalf("%s: loaded %d, ensured %d", names[i], got[i], vals[i])
		}
	}
	if got[len(names)] != 0 {
		t.Fatalf("missing counter reads %d", got[len(names)])
	}
	// A second ensure keeps the values; counters reads them back.
	again := make([]uint64, len(names))
	if err := b.Ensure(ctx, names, again); err != nil {
		t.Fatal(err)
	}
	for i := range names {
		if again[i] != vals[i] {
			t.Fatalf("ensure replaced %s: %d -> %d", names[i], vals[i], again[i])
		}
	}
	// An absent entry: nil, no error, counters still filled.
	got = make([]uint64, len(names))
	if e, err := b.Load(ctx, p+":e:absent", names, got); e != nil || err != nil || got[0] != vals[0] {
		t.Fatalf("absent: %v %v %v", e, err, got)
	}
	// The entry expires as told: 60 s, +1 for memcached's clock (mg
	// reports the seconds left).
	if ttl, ok := mcTTL(t, addrs, key); !ok || ttl < 59 || ttl > 61 {
		t.Fatalf("entry TTL %d %v, want ~61", ttl, ok)
	}
	// Counters expire, after their lifetime (backend.DefaultCounterTTL for a
	// backend opened without a Cache), never before the entry.
	if ttl, ok := mcTTL(t, addrs, names[0]); !ok || ttl < int64(backend.DefaultCounterTTL/time.Second)-1 || ttl > int64(backend.DefaultCounterTTL/time.Second)+1 {
		t.Fatalf("counter TTL %d %v, want ~%d", ttl, ok, int64(backend.DefaultCounterTTL/time.Second))
	}
}

// Concurrent ensures of a missing counter agree on one value.
func TestMemcacheEnsureRace(t *testing.T) {
	b := mcOpen(t, mcURL(mcAddrs(t), ""))
	name := mcPrefix() + ":v:t:race"
	const n = 16
	got := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := []uint64{0}
			if err := b.Ensure(context.Background(), []string{name}, v); err != nil {
				t.Error(err)
			}
			got[i] = v[0]
		}()
	}
	wg.Wait()
	for i := range got {
		if got[i] == 0 || got[i] != got[0] {
			t.Fatalf("ensure results differ: %v", got)
		}
	}
}

// gocache's store sends a sub-second TTL as 0 (never expires): ours rounds
// it up (to 2 s: memcached may cut one), so the entry is there for at least
// its TTL and gone within a few seconds.
func TestMemcacheSubSecondTTL(t *testing.T) {
	addrs := mcAddrs(t)
	b := mcOpen(t, mcURL(addrs, ""))
	ctx := context.Background()
	key := mcPrefix() + ":e:short"
	start := time.Now()
	if err := b.Store(ctx, key, mcEntry("k", []byte("x")), 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if e, err := b.Load(ctx, key, nil, nil); e == nil || err != nil {
		t.Fatalf("right after store: %v %v", e, err)
	}
	if ttl, ok := mcTTL(t, addrs, key); !ok || ttl < 1 || ttl > 2 {
		t.Fatalf("server TTL %d %v, want 1-2 s (0 or -1 would be never)", ttl, ok)
	}
	for {
		e, err := b.Load(ctx, key, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("a 500ms entry still present after 5s (stored as never-expiring?)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	gone := time.Since(start)
	t.Logf("500ms entry gone after %v", gone.Round(time.Millisecond))
	if gone < 500*time.Millisecond {
		t.Fatalf("a 500ms entry was gone after %v", gone)
	}
}

// gocache's store sends a TTL over 30 days as relative seconds, which
// memcached reads as a unix time in 1970 (expired at once): ours sends the
// absolute time.
func TestMemcacheLongTTL(t *testing.T) {
	addrs := mcAddrs(t)
	b := mcOpen(t, mcURL(addrs, ""))
	ctx := context.Background()
	key := mcPrefix() + ":e:long"
	before := time.Now().Unix()
	if err := b.Store(ctx, key, mcEntry("k", []byte("x")), 31*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Unix()
	if e, err := b.Load(ctx, key, nil, nil); e == nil || err != nil {
		t.Fatalf("31-day entry absent right after store: %v %v", e, err)
	}
	ttl, ok := mcTTL(t, addrs, key)
	// memcached maps the absolute time sent (the wall clock's now + 31
	// days + 1 s) onto its own clock, which runs apart from the wall clock
	// by as much as the machine's clock was stepped since the server
	// started (tens of seconds on a busy VM): the time left is judged
	// against the server's own now ("stats" time).
	now := mcServerTime(t, addrs, key)
	lo, hi := before+31*24*3600+1-now-2, after+31*24*3600+1-now+2
	t.Logf("31-day entry: server reports %d s left, want %d to %d (its clock %+d s from the wall clock)", ttl, lo, hi, now-time.Now().Unix())
	if !ok || ttl < lo || ttl > hi {
		t.Fatalf("server TTL %d %v, want %d to %d", ttl, ok, lo, hi)
	}
	// The longest relative time (30 days - 1 s, +1 s) is sent as is.
	key30 := key + "30"
	if err := b.Store(ctx, key30, mcEntry("k", []byte("x")), 30*24*time.Hour-time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl, ok := mcTTL(t, addrs, key30); !ok || ttl < 30*24*3600-5 {
		t.Fatalf("30-day TTL %d %v", ttl, ok)
	}
	b.client.Delete(key)
	b.client.Delete(key30)
}

// bump increments; a missing counter is created from a fresh value, never
// 0 and never a value it had before.
func TestMemcacheBump(t *testing.T) {
	b := mcOpen(t, mcURL(mcAddrs(t), ""))
	ctx := context.Background()
	name := mcPrefix() + ":v:t:x"
	read := func() uint64 {
		v := []uint64{0}
		if err := b.Counters(ctx, []string{name}, v); err != nil {
			t.Fatal(err)
		}
		return v[0]
	}
	seen := map[uint64]bool{}
	for round := range 5 {
		if err := b.Bump(ctx, name); err != nil {
			t.Fatal(err)
		}
		v := read()
		if v <= backend.BaseCounter || seen[v] {
			t.Fatalf("round %d: bump on a missing counter made %d (seen before: %v)", round, v, seen[v])
		}
		seen[v] = true
		for i := range 3 {
			if err := b.Bump(ctx, name); err != nil {
				t.Fatal(err)
			}
			if w := read(); w != v+uint64(i)+1 {
				t.Fatalf("bump %d: %d -> %d", i, v, w)
			}
			seen[v+uint64(i)+1] = true
		}
		// The counter is lost (evicted, server restarted): the next bump must
		// not bring back a value an entry may have recorded.
		if err := b.client.Delete(name); err != nil {
			t.Fatal(err)
		}
	}

	// Many bumps racing on a missing counter: one creates it, the others
	// increment it; none fails and none is lost.
	race := name + ":race"
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Bump(ctx, race); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	vals := []uint64{0}
	b.Counters(ctx, []string{race}, vals)
	it, err := b.client.Get(race)
	if err != nil || vals[0] <= backend.BaseCounter+n {
		t.Fatalf("raced counter %d %v", vals[0], err)
	}
	t.Logf("raced counter %s", it.Value)

	// Something that is not a number under a counter's name is replaced.
	junk := name + ":junk"
	b.client.Set(&memcache.Item{Key: junk, Value: []byte("not a number")})
	if err := b.Bump(ctx, junk); err != nil {
		t.Fatal(err)
	}
	vals[0] = 0
	if b.Counters(ctx, []string{junk}, vals); vals[0] <= backend.BaseCounter {
		t.Fatalf("bump over junk left %d", vals[0])
	}
	b.client.Set(&memcache.Item{Key: junk, Value: []byte("junk")})
	vals[0] = 0
	if err := b.Ensure(ctx, []string{junk}, vals); err != nil || vals[0] <= backend.BaseCounter {
		t.Fatalf("ensure over junk: %d %v", vals[0], err)
	}
	if v := read2(t, b, junk); v != vals[0] {
		t.Fatalf("ensure over junk stored %d, returned %d", v, vals[0])
	}
}

func read2(t testing.TB, b *Backend, name string) uint64 {
	v := []uint64{0}
	if err := b.Counters(context.Background(), []string{name}, v); err != nil {
		t.Fatal(err)
	}
	return v[0]
}

// mcSend sends cmd to the server at addr on a new connection (closed by
// the caller), to be read within two seconds.
func mcSend(t testing.TB, addr, cmd string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// mcServerTime is the unix time on the clock of the server of addrs that
// holds key ("stats" time), or fails the test.
func mcServerTime(t testing.TB, addrs []string, key string) int64 {
	t.Helper()
	for _, a := range addrs {
		c, r := mcSend(t, a, "mg "+key+"\r\nstats\r\n")
		line, err := r.ReadString('\n')
		held := err == nil && !strings.HasPrefix(line, "EN")
		var now int64
		for err == nil && line != "END\r\n" {
			if v, found := strings.CutPrefix(line, "STAT time "); found {
				now, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
			line, err = r.ReadString('\n')
		}
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if held {
			if now == 0 {
				t.Fatal("no STAT time in the server's stats")
			}
			return now
		}
	}
	t.Fatalf("no server holds %q", key)
	return 0
}

// mcTTL asks the server holding key for its remaining TTL with the meta
// command "mg <key> t" (memcached >= 1.6): -1 is "never expires", and
// ok=false means the key is absent.
func mcTTL(t testing.TB, addrs []string, key string) (ttl int64, ok bool) {
	t.Helper()
	for _, a := range addrs {
		c, r := mcSend(t, a, "mg "+key+" t\r\n")
		line, err := r.ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "EN") {
			continue
		}
		for _, f := range strings.Fields(line)[1:] {
			if v, found := strings.CutPrefix(f, "t"); found {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("mg reply %q", line)
				}
				return n, true
			}
		}
		t.Fatalf("mg reply %q", line)
	}
	return 0, false
}
