package near

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core/backend"
)

// Session 9 review. ReadLocal (af480b6) answers a counter only while the
// near cache would trust it for a Load: not while the pub/sub subscription
// is down, not after every counter was dropped (lose, a resubscription, a
// restart), not for a counter a message dropped, and on Memcached not past
// the staleness bound.
func TestReviewS9ReadLocalTrustsWhatLoadTrusts(t *testing.T) {
	f := newSnapFixture(t)
	n := f.n
	n.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	// Pub/sub mode: a client (never used here) and the subscription live.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { client.Close() })
	n.client = client
	n.coherent.Store(true)
	names := []string{"v:t:owner:1", "v:t:owner:2"}
	want := []uint64{7, 9}
	vals := make([]uint64, len(names))
	read := func(step string, ok bool) {
		t.Helper()
		clear(vals)
		got := n.ReadLocal(names, vals)
		if got != ok || ok && (vals[0] != want[0] || vals[1] != want[1]) {
			t.Fatalf("%s: ReadLocal %v %v, want %v %v", step, got, vals, ok, want)
		}
	}
	n.Remember(names, want)
	read("held", true)
	// The moment lose marked the subscription down, before its dropAll.
	n.coherent.Store(false)
	read("subscription down, values still held", false)
	n.coherent.Store(true)
	read("held again", true)
	n.lose(errors.New("cut"))
	read("subscription down", false)
	n.Remember(names, want) // not kept while incoherent
	n.coherent.Store(true)
	read("resubscribed: everything was dropped", false)
	n.Remember(names, want)
	read("read again", true)
	n.drop(names[1])
	read("one dropped by a message", false)
	n.Remember(names, want)
	n.dropAll()
	read("all dropped (a restart)", false)
	// A value read before an invalidation seen since is not kept.
	epoch := n.epoch.Load()
	n.drop(names[0])
	n.install(epoch, names, want)
	read("read before a drop, installed after it", false)

	// Memcached: no client, a staleness bound.
	n.client = nil
	n.staleness = time.Hour
	n.Remember(names, want)
	read("memcached, within the bound", true)
	n.mu.Lock()
	n.local.put(names[0], nearCounter{v: want[0], checked: time.Now().Add(-2 * time.Hour).UnixNano()})
	n.mu.Unlock()
	read("memcached, one past the bound", false)
}

// Vouch (58a7d68) records a route for the very entry the L1 holds, once:
// not for another entry under the key, not over an earlier vouch, and a
// replacement of the L1 entry forgets it. Fresh answers only the entry's
// producer or the vouched route.
func TestReviewS9VouchIsForTheEntryHeld(t *testing.T) {
	f := newSnapFixture(t)
	n := f.n
	ctx := context.Background()
	le, ok := n.l1.Load(f.key)
	if !ok {
		t.Fatal("no L1 entry")
	}
	e := le.e
	e.Producer = nil // as decoded from the remote store
	p1, p2 := new(int), new(int)
	vals := make([]uint64, len(f.names))
	load := func() {
		t.Helper()
		if got, err := n.Load(ctx, f.key, f.names, vals); err != nil || got != e {
			t.Fatalf("Load: %v %v", got, err)
		}
	}
	load()
	load() // the snapshot of the entry's counters
	if n.Fresh(f.key, p1) != nil {
		t.Fatal("Fresh answered a route never vouched for")
	}
	n.Vouch(f.key, s9Clone(e), p1)
	if n.Fresh(f.key, p1) != nil {
		t.Fatal("a vouch for another entry took effect")
	}
	n.Vouch(f.key, e, p1)
	if n.Fresh(f.key, p1) != e {
		t.Fatal("the vouched route gets no fresh hit")
	}
	n.Vouch(f.key, e, p2)
	if n.Fresh(f.key, p2) != nil {
		t.Fatal("a second vouch replaced the first")
	}
	// The L1 entry replaced (a Store under the key): the vouch is gone.
	n.setL1(f.key, s9Clone(e), time.Hour)
	if got, err := n.Load(ctx, f.key, f.names, vals); err != nil || got == e || got == nil {
		t.Fatalf("Load after the replacement: %v %v", got, err)
	}
	n.Load(ctx, f.key, f.names, vals)
	if got := n.Fresh(f.key, p1); got != nil {
		t.Fatal("the vouch outlived the entry it was made for")
	}
}

// s9Clone is another entry with e's content and counters.
func s9Clone(e *backend.Entry) *backend.Entry {
	c := &backend.Entry{
		Status: e.Status, Header: e.Header.Clone(), Body: append([]byte(nil), e.Body...), Key: e.Key,
		Created: e.Created, FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, SWRUntil: e.SWRUntil,
		Counters: append([]backend.CounterSnap(nil), e.Counters...),
	}
	c.Prepare()
	return c
}
