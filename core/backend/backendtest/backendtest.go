// Package backendtest is the contract suite every routecache backend
// passes: Run it from a driver's tests against a real server.
//
//	func TestContract(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			be, err := backend.Open("mystore://"+backendtest.Server(t, "MYSTORE_ADDR"), backend.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return be
//		})
//	}
//
// Besides the methods of backend.Backend it checks the optional
// capabilities the backend implements (SoftBumper, Leaser, LeasePoller),
// and the ownership rules: keys and names passed in may be overwritten as
// soon as a call returns.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/routecache/routecache/core/backend"
)

// Server returns the address the test command exported in the named
// variable (ROUTECACHE_TEST_REDIS, ROUTECACHE_TEST_REDIS_CLUSTER,
// ROUTECACHE_TEST_MEMCACHE). Outside CI a missing server skips the test;
// under CI=true it fails it: CI must never pass by skipping.
func Server(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set under CI=true: the test command must start the server (run `make test`)", env)
		}
		t.Skipf("%s not set: run `make test` to start the servers", env)
	}
	return v
}

// Option adjusts what Run checks.
type Option func(*config)

type config struct {
	refusesOver int64
}

// RefusesEntriesOver says the backend refuses (ErrTooLarge) entries whose
// body is n bytes or more; Run checks it. Without it Run checks only that
// a large entry is either refused with ErrTooLarge or stored whole.
func RefusesEntriesOver(n int64) Option { return func(c *config) { c.refusesOver = n } }

// Run runs the contract suite. open returns a new backend for each
// subtest (closed by Run at the end of it); backends of one Run may share
// a server, and every subtest uses keys of its own.
func Run(t *testing.T, open func(t *testing.T) backend.Backend, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	sub := func(name string, f func(t *testing.T, h *harness)) {
		t.Run(name, func(t *testing.T) {
			be := open(t)
			t.Cleanup(func() { _ = be.Close() })
			h := &harness{be: be, form: backend.FormOf(be), ns: fmt.Sprintf("bt%d:", backend.FreshCounter()%1e12)}
			f(t, h)
		})
	}
	sub("RoundTrip", testRoundTrip)
	sub("Miss", testMiss)
	sub("Counters", testCounters)
	sub("TTL", testTTL)
	sub("TooLarge", func(t *testing.T, h *harness) { testTooLarge(t, h, cfg.refusesOver) })
	sub("OddKeys", testOddKeys)
	sub("Aliasing", testAliasing)
	sub("Concurrency", testConcurrency)
	sub("SoftMarks", testSoft)
	sub("Leases", testLeases)
}

type harness struct {
	be   backend.Backend
	form backend.KeyForm
	ns   string
}

// key is the key the engine would pass for a canonical key (which starts
// with the namespace, as the engine's do).
func (h *harness) key(canonical string) string {
	canonical = h.ns + canonical
	if h.form == backend.KeysHashed {
		return backend.EntryKey(h.ns, canonical)
	}
	return canonical
}

// counter is a counter name of the suite's namespace (short and
// printable: every KeyForm passes it as it is).
func (h *harness) counter(name string) string { return h.ns + "v:" + name }

func entry(h *harness, key string, body []byte, counters ...backend.CounterSnap) *backend.Entry {
	now := time.Now().UnixNano()
	e := &backend.Entry{
		Status:     200,
		Header:     http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}},
		Body:       body,
		Created:    now,
		FreshUntil: now + int64(time.Minute),
		StaleUntil: now + int64(2*time.Minute),
		SWRUntil:   now + int64(90*time.Second),
		FillNanos:  1234,
		ETag:       `"e"`,
		Key:        h.ns + key,
		Counters:   counters,
	}
	e.Prepare()
	return e
}

func sameEntry(t *testing.T, got, want *backend.Entry) {
	t.Helper()
	if got == nil {
		t.Fatal("entry not found")
	}
	if got.Status != want.Status || !bytes.Equal(got.Body, want.Body) || got.Key != want.Key || got.ETag != want.ETag ||
		got.Created != want.Created || got.FreshUntil != want.FreshUntil || got.StaleUntil != want.StaleUntil ||
		got.SWRUntil != want.SWRUntil || got.FillNanos != want.FillNanos || !reflect.DeepEqual(got.Header, want.Header) ||
		len(got.Counters) != len(want.Counters) {
		t.Fatalf("loaded entry differs:\n got %+v\nwant %+v", got, want)
	}
	for i := range got.Counters {
		if got.Counters[i] != want.Counters[i] {
			t.Fatalf("counter %d: got %+v, want %+v", i, got.Counters[i], want.Counters[i])
		}
	}
}

func testRoundTrip(t *testing.T, h *harness) {
	ctx := context.Background()
	names := []string{h.counter("a"), h.counter("b")}
	vals := make([]uint64, 2)
	if err := h.be.Ensure(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	want := entry(h, "k", []byte("hello"), backend.CounterSnap{Name: names[0], Value: vals[0]}, backend.CounterSnap{Name: names[1], Value: vals[1]})
	key := h.key("k")
	if err := h.be.Store(ctx, key, want, time.Minute); err != nil {
		t.Fatal(err)
	}
	got := make([]uint64, 2)
	e, err := h.be.Load(ctx, key, names, got)
	if err != nil {
		t.Fatal(err)
	}
	sameEntry(t, e, want)
	if got[0] != vals[0] || got[1] != vals[1] {
		t.Fatalf("counters with the entry %v, ensured %v", got, vals)
	}
	// An entry with no body and no counters round-trips too.
	empty := entry(h, "empty", nil)
	if err := h.be.Store(ctx, h.key("empty"), empty, time.Minute); err != nil {
		t.Fatal(err)
	}
	e, err = h.be.Load(ctx, h.key("empty"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameEntry(t, e, empty)
}

func testMiss(t *testing.T, h *harness) {
	ctx := context.Background()
	vals := []uint64{7}
	e, err := h.be.Load(ctx, h.key("absent"), []string{h.counter("absent")}, vals)
	if e != nil || err != nil {
		t.Fatalf("absent key: %v, %v", e, err)
	}
	// A counter never created reads as missing (0) or, in a store whose
	// counters are never lost, as BaseCounter.
	if vals[0] != 0 && vals[0] != backend.BaseCounter {
		t.Fatalf("a counter never created reads %d", vals[0])
	}
}

func testCounters(t *testing.T, h *harness) {
	ctx := context.Background()
	names := []string{h.counter("x"), h.counter("y")}
	vals := make([]uint64, 2)
	if err := h.be.Counters(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	if err := h.be.Ensure(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	if vals[0] == 0 || vals[1] == 0 {
		t.Fatalf("ensured counters %v", vals)
	}
	again := make([]uint64, 2)
	if err := h.be.Counters(ctx, names, again); err != nil || again[0] != vals[0] || again[1] != vals[1] {
		t.Fatalf("counters after ensure %v (%v), ensured %v", again, err, vals)
	}
	// Ensure leaves existing counters as they are.
	if err := h.be.Ensure(ctx, names, again); err != nil || again[0] != vals[0] || again[1] != vals[1] {
		t.Fatalf("ensure of existing counters %v (%v), want %v", again, err, vals)
	}
	// Each bump gives a value the counter never had.
	seen := map[uint64]bool{vals[0]: true}
	for range 5 {
		if err := h.be.Bump(ctx, names[0]); err != nil {
			t.Fatal(err)
		}
		v := make([]uint64, 2)
		if err := h.be.Counters(ctx, names, v); err != nil {
			t.Fatal(err)
		}
		if v[0] == 0 || seen[v[0]] {
			t.Fatalf("bumped counter reads %d (seen %v)", v[0], seen)
		}
		seen[v[0]] = true
		if v[1] != vals[1] {
			t.Fatalf("bump of %s moved %s: %d -> %d", names[0], names[1], vals[1], v[1])
		}
	}
	// Bump creates a missing counter.
	fresh := []string{h.counter("bumped-first")}
	if err := h.be.Bump(ctx, fresh[0]); err != nil {
		t.Fatal(err)
	}
	v := make([]uint64, 1)
	if err := h.be.Counters(ctx, fresh, v); err != nil || v[0] == 0 || v[0] == backend.BaseCounter {
		t.Fatalf("a counter created by bump reads %d (%v)", v[0], err)
	}
}

// testTTL checks that a remote store lets an entry go after its TTL
// (in-process stores may keep it: the engine checks an entry's times).
func testTTL(t *testing.T, h *harness) {
	if !h.be.Remote() {
		t.Skip("in-process store: expiry is the engine's (entry times)")
	}
	ctx := context.Background()
	key := h.key("ttl")
	// The entry's times end with its TTL, as the engine's do (a near
	// cache keeps a copy until StaleUntil).
	short := entry(h, "ttl", []byte("x"))
	short.FreshUntil = time.Now().Add(time.Second).UnixNano()
	short.StaleUntil, short.SWRUntil = short.FreshUntil, short.FreshUntil
	if err := h.be.Store(ctx, key, short, time.Second); err != nil {
		t.Fatal(err)
	}
	if e, err := h.be.Load(ctx, key, nil, nil); e == nil || err != nil {
		t.Fatalf("fresh entry: %v, %v", e, err)
	}
	long := h.key("long")
	if err := h.be.Store(ctx, long, entry(h, "long", []byte("y")), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Memcached counts whole seconds, rounding up: allow a few.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := h.be.Load(ctx, key, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry stored with a 1s TTL still there after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e, err := h.be.Load(ctx, long, nil, nil); e == nil || err != nil {
		t.Fatalf("entry with a minute's TTL went with the short one: %v, %v", e, err)
	}
}

func testTooLarge(t *testing.T, h *harness, over int64) {
	ctx := context.Background()
	size := int64(3 << 20)
	if over > 0 {
		size = over
	}
	key := h.key("big")
	big := entry(h, "big", bytes.Repeat([]byte("z"), int(size)))
	err := h.be.Store(ctx, key, big, time.Minute)
	if over > 0 && err == nil {
		t.Fatalf("a %d-byte body was stored, want ErrTooLarge", size)
	}
	if err != nil && !errors.Is(err, backend.ErrTooLarge) {
		t.Fatalf("refused with %v, want ErrTooLarge", err)
	}
	e, lerr := h.be.Load(ctx, key, nil, nil)
	if lerr != nil {
		t.Fatalf("load after a large store: %v", lerr)
	}
	if err != nil && e != nil {
		t.Fatal("a refused entry was stored")
	}
	if err == nil {
		sameEntry(t, e, big)
	}
}

// testOddKeys stores under canonical keys of any bytes: the form the
// engine passes (hashed for remote stores) must hold them.
func testOddKeys(t *testing.T, h *harness) {
	ctx := context.Background()
	for i, k := range []string{"sp ace", "nul\x00byte", "é\n\r\t", strings.Repeat("long/", 100), "\xff\xfe"} {
		key := h.key(k)
		want := entry(h, k, []byte(fmt.Sprint(i)))
		if err := h.be.Store(ctx, key, want, time.Minute); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
		e, err := h.be.Load(ctx, key, nil, nil)
		if err != nil {
			t.Fatalf("%q: %v", k, err)
		}
		sameEntry(t, e, want)
	}
}

// view returns a string viewing b, as the engine's keys view its pooled
// request memory.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func scribble(b []byte) {
	for i := range b {
		b[i] = '#'
	}
}

// testAliasing passes keys and names that view a buffer, overwrites the
// buffer once each call returned, and checks that what was stored is
// still found under the original text.
func testAliasing(t *testing.T, h *harness) {
	ctx := context.Background()
	key := h.key("alias")
	kb := []byte(key)
	want := entry(h, "alias", []byte("aliased"))
	if err := h.be.Store(ctx, view(kb), want, time.Minute); err != nil {
		t.Fatal(err)
	}
	scribble(kb)
	e, err := h.be.Load(ctx, key, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameEntry(t, e, want)

	for _, op := range []string{"ensure", "bump", "soft"} {
		name := h.counter("alias-" + op)
		nb := []byte(name)
		vals := make([]uint64, 1)
		switch op {
		case "ensure":
			if err := h.be.Ensure(ctx, []string{view(nb)}, vals); err != nil {
				t.Fatal(err)
			}
		case "bump":
			if err := h.be.Bump(ctx, view(nb)); err != nil {
				t.Fatal(err)
			}
		case "soft":
			sb, ok := h.be.(backend.SoftBumper)
			if !ok {
				continue
			}
			if err := sb.SoftBump(ctx, view(nb)); err != nil {
				t.Fatal(err)
			}
		}
		scribble(nb)
		got := make([]uint64, 1)
		if err := h.be.Counters(ctx, []string{name}, got); err != nil {
			t.Fatal(err)
		}
		if got[0] == 0 || op == "ensure" && got[0] != vals[0] || op != "ensure" && got[0] == backend.BaseCounter {
			t.Fatalf("%s of an aliased name: counter reads %d (ensured %d)", op, got[0], vals[0])
		}
		if op == "soft" {
			marks := make([]backend.SoftMark, 1)
			if err := h.be.(backend.SoftBumper).SoftMarks(ctx, []string{name}, marks); err != nil {
				t.Fatal(err)
			}
			if marks[0].New != got[0] && marks[0] != (backend.SoftMark{}) {
				t.Fatalf("soft mark %+v of an aliased name, counter %d", marks[0], got[0])
			}
		}
	}
	// A loaded entry is not tied to the key it was loaded with.
	lb := []byte(key)
	e, err = h.be.Load(ctx, view(lb), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	scribble(lb)
	sameEntry(t, e, want)
}

func testConcurrency(t *testing.T, h *harness) {
	ctx := context.Background()
	names := []string{h.counter("c0"), h.counter("c1")}
	start := make([]uint64, 2)
	if err := h.be.Ensure(ctx, names, start); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := fmt.Sprintf("conc%d", i%4)
				vals := make([]uint64, 2)
				e, err := h.be.Load(ctx, h.key(k), names, vals)
				if err != nil {
					errs <- fmt.Errorf("load: %w", err)
					return
				}
				if e != nil && e.Key != h.ns+k {
					errs <- fmt.Errorf("key %s loaded the entry of %s", k, e.Key)
					return
				}
				if err := h.be.Store(ctx, h.key(k), entry(h, k, []byte(k)), time.Minute); err != nil {
					errs <- fmt.Errorf("store: %w", err)
					return
				}
				if w%2 == 0 {
					if err := h.be.Bump(ctx, names[i%2]); err != nil {
						errs <- fmt.Errorf("bump: %w", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	end := make([]uint64, 2)
	if err := h.be.Counters(ctx, names, end); err != nil {
		t.Fatal(err)
	}
	if end[0] == start[0] || end[1] == start[1] || end[0] == 0 || end[1] == 0 {
		t.Fatalf("counters after concurrent bumps %v, before %v", end, start)
	}
}

func testSoft(t *testing.T, h *harness) {
	sb, ok := h.be.(backend.SoftBumper)
	if !ok {
		t.Skip("no SoftBumper")
	}
	ctx := context.Background()
	names := []string{h.counter("soft"), h.counter("untouched")}
	before := make([]uint64, 2)
	if err := h.be.Ensure(ctx, names, before); err != nil {
		t.Fatal(err)
	}
	if err := sb.SoftBump(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	after := make([]uint64, 2)
	if err := h.be.Counters(ctx, names, after); err != nil {
		t.Fatal(err)
	}
	if after[0] == before[0] {
		t.Fatal("a soft bump left the counter as it was")
	}
	marks := make([]backend.SoftMark, 2)
	if err := sb.SoftMarks(ctx, names, marks); err != nil {
		t.Fatal(err)
	}
	if marks[0] != (backend.SoftMark{Old: before[0], New: after[0]}) {
		t.Fatalf("mark %+v, counter moved %d -> %d", marks[0], before[0], after[0])
	}
	if marks[1] != (backend.SoftMark{}) {
		t.Fatalf("a counter never bumped softly has mark %+v", marks[1])
	}
	// A hard bump ends the grace: the mark no longer names the value.
	if err := h.be.Bump(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	if err := h.be.Counters(ctx, names, after); err != nil {
		t.Fatal(err)
	}
	if err := sb.SoftMarks(ctx, names, marks); err != nil {
		t.Fatal(err)
	}
	if marks[0].New == after[0] {
		t.Fatalf("after a hard bump the mark %+v still names the counter's value %d", marks[0], after[0])
	}
}

func testLeases(t *testing.T, h *harness) {
	l, ok := h.be.(backend.Leaser)
	if !ok {
		t.Skip("no Leaser")
	}
	ctx := context.Background()
	lkey := h.ns + "l:lease"
	tok, ok, err := l.Acquire(ctx, lkey, time.Minute)
	if err != nil || !ok || tok == "" {
		t.Fatalf("first acquire: %q %v %v", tok, ok, err)
	}
	if _, ok, err := l.Acquire(ctx, lkey, time.Minute); err != nil || ok {
		t.Fatalf("second acquire while held: %v %v", ok, err)
	}
	p, polls := h.be.(backend.LeasePoller)
	key := h.key("leased")
	names := []string{h.counter("leased")}
	vals := make([]uint64, 1)
	if err := h.be.Ensure(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	if polls {
		got := make([]uint64, 1)
		e, held, err := p.Poll(ctx, key, lkey, names, got)
		if err != nil || e != nil || !held || got[0] != vals[0] {
			t.Fatalf("poll while held, before the store: %v %v %v %v", e, held, err, got)
		}
		want := entry(h, "leased", []byte("filled"))
		if err := h.be.Store(ctx, key, want, time.Minute); err != nil {
			t.Fatal(err)
		}
		e, held, err = p.Poll(ctx, key, lkey, names, got)
		if err != nil || !held {
			t.Fatalf("poll after the store: %v %v", held, err)
		}
		sameEntry(t, e, want)
	}
	// A wrong token does not release the lease.
	if err := l.Release(ctx, lkey, tok+"x"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.Acquire(ctx, lkey, time.Minute); err != nil || ok {
		t.Fatalf("acquire after a foreign release: %v %v", ok, err)
	}
	if err := l.Release(ctx, lkey, tok); err != nil {
		t.Fatal(err)
	}
	if polls {
		_, held, err := p.Poll(ctx, key, lkey, names, make([]uint64, 1))
		if err != nil || held {
			t.Fatalf("poll after release: held %v %v", held, err)
		}
	}
	tok2, ok, err := l.Acquire(ctx, lkey, time.Minute)
	if err != nil || !ok {
		t.Fatalf("acquire after release: %v %v", ok, err)
	}
	_ = l.Release(ctx, lkey, tok2)
}
