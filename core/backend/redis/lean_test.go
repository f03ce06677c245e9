package redis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/redis/go-redis/v9"
)

// privateRedis is a redis-server this test started on a free loopback
// port (for CLIENT PAUSE, passwords, restarts: things the shared test
// server must not see). Under CI=true a missing binary fails the test.
type privateRedis struct {
	t    testing.TB
	port string
	args []string
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

func startPrivateRedis(t testing.TB, args ...string) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found under CI=true")
		}
		t.Skip("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_ = ln.Close()
	s := &privateRedis{t: t, port: port, args: args}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *privateRedis) addr() string { return "127.0.0.1:" + s.port }

func (s *privateRedis) start() {
	s.t.Helper()
	args := append([]string{"--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	s.out.Reset()
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	s.done = done
	for range 400 {
		select {
		case <-done:
			s.t.Fatalf("redis-server exited at start: %s", s.out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.addr(), time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(c, "PING\r\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			if err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")) {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s never answered", s.addr())
}

// kill ends the server with SIGKILL (a crash) and reaps it.
func (s *privateRedis) kill() {
	if s.cmd == nil || s.cmd.Process == nil || s.done == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.done = nil
}

// openURL opens a single-node backend (registering no regions).
func openURL(t *testing.T, raw string) *Backend {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openRedis(u, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// misread says how a Load's answer (entry e, counter got) differs from
// key's own entry (with body, unless "") and counter value want; "" when
// it is key's own.
func misread(e *backend.Entry, got uint64, key, body string, want uint64) string {
	if e != nil && e.Key == key && (body == "" || string(e.Body) == body) && got == want {
		return ""
	}
	k := "<nil>"
	if e != nil {
		k = e.Key
	}
	return fmt.Sprintf("read entry %s, counter %d (want %d)", k, got, want)
}

// countDials makes b's lean pool count the connections it opens.
func countDials(b *Backend) *atomic.Int64 {
	var n atomic.Int64
	b.lean.dialHook = func(c net.Conn) net.Conn { n.Add(1); return c }
	return &n
}

// viaGoRedis is a copy of b that reads through go-redis only.
func viaGoRedis(b *Backend) *Backend {
	c := &Backend{client: b.client, st: b.st, timeout: b.timeout, maxEntry: b.maxEntry, maxEntryArg: b.maxEntryArg,
		adm: b.adm, instance: b.instance}
	return c
}

// loadResult is what a Load answered, comparable.
type loadResult struct {
	key, body string
	err       string
	vals      string
}

func load(b *Backend, key string, names []string) loadResult {
	vals := make([]uint64, len(names))
	e, err := b.Load(context.Background(), key, names, vals)
	var r loadResult
	if e != nil {
		r.key, r.body = e.Key, string(e.Body)
	}
	switch {
	case errors.Is(err, backend.ErrCorrupt):
		r.err = "corrupt"
	case err != nil:
		r.err = "error"
		var re redis.Error
		if errors.As(err, &re) {
			r.err = "reply"
		}
	}
	r.vals = fmt.Sprint(vals)
	return r
}

// The lean path answers every kind of value as the go-redis path does:
// hits, misses, corrupt and oversize entries, WRONGTYPE under an entry or
// a counter, foreign and non-numeric counters.
func TestLeanLoadAnswersAsGoRedis(t *testing.T) {
	b := openTest(t, "")
	b.BoundEntries(4 << 10)
	ref := viaGoRedis(b)
	ctx := context.Background()
	ns := fmt.Sprintf("rctest:lean:%x:", backend.FreshCounter())
	c1, c2 := ns+"v:1", ns+"v:2"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.client.Set(ctx, c1, "123", time.Minute).Err())
	must(b.client.Set(ctx, c2, "18446744073709551615", time.Minute).Err())
	must(b.client.Set(ctx, ns+"v:junk", "12x", time.Minute).Err())
	must(b.client.Set(ctx, ns+"v:long", strings.Repeat("7", 100), time.Minute).Err())
	must(b.client.Set(ctx, ns+"v:20digits", "99999999999999999999", time.Minute).Err())
	must(b.client.Set(ctx, ns+"v:empty", "", time.Minute).Err())
	must(b.client.RPush(ctx, ns+"v:list", "x").Err())
	must(b.Store(ctx, ns+"e:hit", testEntry(ns+"e:hit", backend.CounterSnap{Name: c1, Value: 123}), time.Minute))
	must(b.client.Set(ctx, ns+"e:corrupt", "not an envelope", time.Minute).Err())
	must(b.client.Set(ctx, ns+"e:huge", strings.Repeat("h", 64<<10), time.Minute).Err())
	must(b.client.Set(ctx, ns+"e:empty", "", time.Minute).Err())
	must(b.client.RPush(ctx, ns+"e:list", "x").Err())
	// A value exactly at the bound: read whole, then not an envelope.
	must(b.client.Set(ctx, ns+"e:atmax", strings.Repeat("m", int(b.maxEntry)), time.Minute).Err())
	counters := [][]string{
		nil,
		{c1},
		{c1, c2},
		{ns + "v:missing", ns + "v:junk", ns + "v:long", ns + "v:20digits", ns + "v:empty", ns + "v:list"},
	}
	before := b.LeanLoads()
	calls := 0
	for _, e := range []string{"hit", "missing", "corrupt", "huge", "empty", "list", "atmax"} {
		for _, names := range counters {
			key := ns + "e:" + e
			got, want := load(b, key, names), load(ref, key, names)
			calls++
			if got != want {
				t.Errorf("Load(%s, %v): lean %+v, go-redis %+v", e, names, got, want)
			}
		}
	}
	if n := b.LeanLoads() - before; n != uint64(calls) {
		t.Fatalf("%d of %d Loads went through the lean path", n, calls)
	}
	if r := load(b, ns+"e:hit", []string{c1, c2}); r.key != ns+"e:hit" || r.vals != "[123 18446744073709551615]" || r.err != "" {
		t.Fatalf("hit: %+v", r)
	}
}

// The lean path sends one write per Load (one round trip), on one
// connection reused from Load to Load.
func TestLeanLoadIsOneWrite(t *testing.T) {
	b := openTest(t, "")
	var writes atomic.Int64
	dials := &atomic.Int64{}
	b.lean.dialHook = func(c net.Conn) net.Conn { dials.Add(1); return &writeCounter{Conn: c, n: &writes} }
	load(b, "rctest:lean:warm", nil) // go-redis's first connection checks the server
	const n = 20
	before := b.LeanLoads()
	load(b, "rctest:lean:first", []string{"a", "b"})
	w0 := writes.Load()
	for range n {
		load(b, "rctest:lean:x", []string{"a", "b", "c"})
	}
	if got := writes.Load() - w0; got != n {
		t.Fatalf("%d writes for %d Loads, want one each", got, n)
	}
	if got := b.LeanLoads() - before; got != n+1 {
		t.Fatalf("%d lean Loads, want %d", got, n+1)
	}
	if dials.Load() != 1 {
		t.Fatalf("%d connections dialled for sequential Loads, want 1", dials.Load())
	}
}

type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (w *writeCounter) Write(p []byte) (int, error) { w.n.Add(1); return w.Conn.Write(p) }

// A Load against a paused server (CLIENT PAUSE) ends with a timeout at the
// URL's timeout, its connection is not reused, and once the pause ends the
// next Load reads its own answer. (A paused Redis 7.0 blocks CLIENT
// UNPAUSE too: the pause lasts a few seconds and ends by itself.)
func TestLeanTimeoutBoundsLoadAgainstClientPause(t *testing.T) {
	s := startPrivateRedis(t)
	b := openURL(t, "redis://"+s.addr()+"/0?timeout=200ms")
	dials := countDials(b)
	ctx := context.Background()
	key := "rctest:lean:pause"
	if err := b.Store(ctx, key, testEntry(key), time.Minute); err != nil {
		t.Fatal(err)
	}
	load(b, key, nil) // go-redis checks the server first
	if r := load(b, key, nil); r.key != key || b.LeanLoads() == 0 {
		t.Fatalf("lean hit: %+v (%d lean Loads)", r, b.LeanLoads())
	}
	admin := redis.NewClient(&redis.Options{Addr: s.addr(), Protocol: 2})
	defer admin.Close()
	const pause = 3 * time.Second
	for attempt := 0; ; attempt++ {
		d0 := dials.Load()
		paused := time.Now()
		if err := admin.Do(ctx, "client", "pause", pause.Milliseconds(), "all").Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := b.Load(ctx, key, []string{"c"}, []uint64{0})
		took := time.Since(start)
		if err == nil && time.Since(paused) > pause && attempt < 5 {
			continue // this machine stalled past the whole pause: again
		}
		if err == nil || !isTimeout(err) || errors.Is(err, backend.ErrQueued) {
			t.Fatalf("Load against a paused server: %v after %v, want a timeout", err, took)
		}
		t.Logf("timed out after %v: %v", took, err)
		// Once the pause is over, the next Load reads its own answer on a
		// new connection.
		var r loadResult
		for i := 0; ; i++ {
			if r = load(b, key, nil); r.err == "" || i == 600 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if r.key != key || r.err != "" {
			t.Fatalf("after the pause: %+v", r)
		}
		if dials.Load() == d0 {
			t.Fatal("the timed-out connection was reused")
		}
		return
	}
}

// A connection whose pipeline's replies were cut off (a deadline in the
// middle of a large entry) is closed, never reused: the next Load of
// another key on the same backend reads that key's entry, on a new
// connection.
func TestLeanCutOffReplyIsNotReused(t *testing.T) {
	b := openTest(t, "")
	b.BoundEntries(96 << 20)
	ctx := context.Background()
	ns := fmt.Sprintf("rctest:leancut:%x:", backend.FreshCounter())
	big, small := ns+"e:big", ns+"e:small"
	huge := testEntry(big)
	huge.Body = bytes.Repeat([]byte("b"), 64<<20)
	huge.Prepare()
	if err := b.Store(ctx, big, huge, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, small, testEntry(small), time.Minute); err != nil {
		t.Fatal(err)
	}
	load(b, small, nil) // go-redis checks the server first
	dials := countDials(b)
	cut := false
	for i := 0; i < 20 && !cut; i++ {
		if r := load(b, small, []string{ns + "v"}); r.key != small {
			t.Fatalf("small: %+v", r)
		}
		d0 := dials.Load()
		// 64 MiB cannot arrive within a millisecond: the read is cut off
		// mid-reply (or, on a stalled machine, before it).
		dctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		_, err := b.Load(dctx, big, []string{ns + "v"}, []uint64{0})
		cancel()
		if err == nil {
			continue
		}
		cut = true
		r := load(b, small, []string{ns + "v"})
		if r.key != small || r.body != "body of "+small || r.err != "" {
			t.Fatalf("the Load after a cut-off one read %+v", r)
		}
		if dials.Load() == d0 {
			t.Fatal("the cut-off connection was reused")
		}
	}
	if !cut {
		t.Fatal("no Load of 64 MiB was cut off by a 1ms deadline")
	}
}

// Concurrent Loads of different keys, some cut off by random deadlines,
// each read their own entry and counters, never another key's.
func TestLeanRandomDeadlinesNeverMixAnswers(t *testing.T) {
	b := openTest(t, "")
	b.BoundEntries(8 << 20)
	ctx := context.Background()
	ns := fmt.Sprintf("rctest:leanmix:%x:", backend.FreshCounter())
	const keys = 12
	type fixture struct {
		key  string
		body string
		name string
		val  uint64
	}
	fx := make([]fixture, keys)
	for i := range fx {
		f := &fx[i]
		f.key, f.name, f.val = fmt.Sprintf("%se:%d", ns, i), fmt.Sprintf("%sv:%d", ns, i), uint64(1000+i)
		if err := b.client.Set(ctx, f.name, f.val, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		e := testEntry(f.key, backend.CounterSnap{Name: f.name, Value: f.val})
		e.Body = bytes.Repeat([]byte{byte('a' + i)}, (i+1)*(i+1)*4<<10) // 4 KiB to 576 KiB
		e.Prepare()
		f.body = string(e.Body)
		if err := b.Store(ctx, f.key, e, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	load(b, fx[0].key, nil) // go-redis checks the server first
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			vals := []uint64{0}
			for i := range 60 {
				f := fx[(g+i)%keys]
				dctx, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
				e, err := b.Load(dctx, f.key, []string{f.name}, vals)
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				if m := misread(e, vals[0], f.key, f.body, f.val); m != "" {
					t.Errorf("Load(%s) %s", f.key, m)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d Loads answered, %d cut off", ok.Load(), failed.Load())
}

// AUTH (password, or ACL user and password) and SELECT: the lean path
// reads the URL's database as the go-redis path does; a wrong password
// leaves the read to go-redis, which reports the refusal.
func TestLeanAuthAndSelect(t *testing.T) {
	s := startPrivateRedis(t, "--requirepass", "sekret")
	admin := redis.NewClient(&redis.Options{Addr: s.addr(), Password: "sekret", Protocol: 2})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Do(ctx, "acl", "setuser", "reader", "on", ">pw2", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		"redis://:sekret@" + s.addr() + "/3?timeout=2s",
		"redis://reader:pw2@" + s.addr() + "/5?timeout=2s&client_name=leantest",
	} {
		b := openURL(t, raw)
		key := "rctest:lean:auth"
		if err := b.Store(ctx, key, testEntry(key), time.Minute); err != nil {
			t.Fatal(err)
		}
		load(b, key, nil) // go-redis checks the server first
		before := b.LeanLoads()
		if r := load(b, key, nil); r.key != key || r.err != "" {
			t.Fatalf("%s: %+v", raw, r)
		}
		if b.LeanLoads() != before+1 {
			t.Fatalf("%s: the Load did not take the lean path", raw)
		}
	}
	// db 0 holds none of it: SELECT was honoured.
	if n, err := admin.Exists(ctx, "rctest:lean:auth").Result(); err != nil || n != 0 {
		t.Fatalf("db 0 has the key: %d %v", n, err)
	}
	bad := openURL(t, "redis://:wrong@"+s.addr()+"/0?timeout=2s")
	for range 3 {
		if got, want := load(bad, "k", []string{"c"}), load(viaGoRedis(bad), "k", []string{"c"}); got != want {
			t.Fatalf("wrong password: lean %+v, go-redis %+v", got, want)
		}
	}
	if bad.LeanLoads() != 0 {
		t.Fatalf("wrong password: %d lean Loads", bad.LeanLoads())
	}
}

// The lean path is used only where it honours the URL: TLS, RESP3,
// max_active_conns and clusters read through go-redis.
func TestLeanOnlyWhereItHonoursTheURL(t *testing.T) {
	for raw, want := range map[string]bool{
		"redis://127.0.0.1:1/0":                    true,
		"redis://u:p@127.0.0.1:1/2?pool_size=3":    true,
		"redis://127.0.0.1:1/0?protocol=2":         true,
		"rediss://127.0.0.1:1/0":                   false,
		"redis://127.0.0.1:1/0?protocol=3":         false,
		"redis://127.0.0.1:1/0?max_active_conns=4": false,
		"redis+cluster://127.0.0.1:1,127.0.0.1:2":  false,
	} {
		u, _ := url.Parse(raw)
		b, err := openRedis(u, strings.Contains(raw, "+cluster"))
		if err != nil {
			t.Fatal(err)
		}
		if got := b.lean != nil; got != want {
			t.Errorf("%s: lean path %v, want %v", raw, got, want)
		}
		_ = b.Close()
	}
}

// A lean connection is read from only under a run_id the restart check
// vouched for: a server the check knows under another run_id is read
// through go-redis, and a connection made before the check's state moved
// on is not reused.
func TestLeanConnectionNeedsTheRestartChecksRunID(t *testing.T) {
	b := openTest(t, "")
	dials := countDials(b)
	load(b, "rctest:lean:vouch", nil) // go-redis checks the server first
	if load(b, "rctest:lean:vouch", nil); b.LeanLoads() != 1 || dials.Load() != 1 {
		t.Fatalf("lean Loads %d, dials %d; want 1 and 1", b.LeanLoads(), dials.Load())
	}
	// The check moves on (regions registered): the idle connection goes.
	b.guard.setRegions(nil)
	load(b, "rctest:lean:vouch", nil)
	if b.LeanLoads() != 2 || dials.Load() != 2 {
		t.Fatalf("after the check moved on: lean Loads %d, dials %d; want 2 and 2", b.LeanLoads(), dials.Load())
	}
	// The check knows the node under another run_id: a new connection is
	// refused and the Load served by go-redis.
	n := b.guard.node(b.lean.addr)
	n.lock <- struct{}{}
	n.runID = "another-run-id"
	b.guard.gen.Add(1)
	<-n.lock
	load(b, "rctest:lean:vouch", nil)
	if b.LeanLoads() != 2 || dials.Load() != 3 {
		t.Fatalf("unvouched server: lean Loads %d, dials %d; want 2 and 3", b.LeanLoads(), dials.Load())
	}
}

// After the server restarts (a crash, a new run_id), the idle lean
// connections are dead: the next Load is served by go-redis, whose new
// connection runs the restart check (resetting the region counters), and
// later Loads take the lean path again under the new run_id.
func TestLeanLoadAfterRestart(t *testing.T) {
	s := startPrivateRedis(t)
	b := openURL(t, "redis://"+s.addr()+"/0?timeout=2s")
	ctx := context.Background()
	region := "rctest:lean:region"
	b.Prepare([]backend.RegionCounters{{Counters: []string{region}}})
	key := "rctest:lean:restart"
	if err := b.Store(ctx, key, testEntry(key), time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := load(b, key, []string{region}); r.key != key || b.LeanLoads() != 1 {
		t.Fatalf("before the restart: %+v, %d lean Loads", r, b.LeanLoads())
	}
	resets := b.guard.resets.Load()
	s.kill()
	s.start()
	// The restarted server is empty (no persistence): a miss, whichever path.
	if r := load(b, key, []string{region}); r.key != "" || r.err != "" {
		t.Fatalf("after the restart: %+v", r)
	}
	if b.LeanLoads() != 1 {
		t.Fatal("the first Load after the restart took the lean path")
	}
	if b.guard.resets.Load() == resets {
		t.Fatal("the restart check did not run")
	}
	if err := b.Store(ctx, key, testEntry(key), time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := load(b, key, []string{region}); r.key != key || b.LeanLoads() != 2 {
		t.Fatalf("later: %+v, %d lean Loads", r, b.LeanLoads())
	}
}

// Close closes the lean connections: the server sees them go.
func TestLeanCloseClosesConnections(t *testing.T) {
	s := startPrivateRedis(t)
	u, _ := url.Parse("redis://" + s.addr() + "/0?timeout=2s")
	b, err := openRedis(u, false)
	if err != nil {
		t.Fatal(err)
	}
	load(b, "k", nil)
	load(b, "k", nil)
	if b.LeanLoads() != 1 {
		t.Fatalf("%d lean Loads", b.LeanLoads())
	}
	_ = b.Close()
	admin := redis.NewClient(&redis.Options{Addr: s.addr(), Protocol: 2})
	defer admin.Close()
	ctx := context.Background()
	for i := 0; ; i++ {
		list, err := admin.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n == 1 {
			break // the admin connection only
		} else if i == 1000 {
			t.Fatalf("%d connections left after Close:\n%s", n, list)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.Load(ctx, "k", nil, nil); err == nil {
		t.Fatal("Load after Close succeeded")
	}
}
