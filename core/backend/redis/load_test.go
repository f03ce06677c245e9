package redis

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// openTest opens a single-node backend on the test server with rawQuery.
func openTest(t *testing.T, rawQuery string) *Backend {
	t.Helper()
	return openURL(t, "redis://"+backendtest.Server(t, "ROUTECACHE_TEST_REDIS")+"/0?timeout=2s"+rawQuery)
}

// testEntry is an entry under key recording counters.
func testEntry(key string, counters ...backend.CounterSnap) *backend.Entry {
	now := time.Now().UnixNano()
	e := &backend.Entry{
		Status:     200,
		Header:     http.Header{"Content-Type": {"text/plain"}},
		Body:       []byte("body of " + key),
		Created:    now,
		FreshUntil: now + int64(time.Minute),
		StaleUntil: now + int64(2*time.Minute),
		Key:        key,
		Counters:   counters,
	}
	e.Prepare()
	return e
}

// A connection speaks RESP2 unless the URL asks for another protocol:
// go-redis's default, RESP3, makes it look for push notifications around
// every command, which the backend never uses.
func TestRedisSpeaksRESP2UnlessTheURLSaysOtherwise(t *testing.T) {
	for _, tc := range []struct{ query, want string }{{"", "resp=2"}, {"&protocol=3", "resp=3"}} {
		b := openTest(t, tc.query)
		info, err := b.client.ClientInfo(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("resp=%d", info.Resp); got != tc.want {
			t.Errorf("query %q: connection has %s, want %s", tc.query, got, tc.want)
		}
	}
}

// Load reuses its commands from one lookup to the next (loadOp): lookups
// running at once, of different keys with different numbers of counters,
// each read their own entry and counters.
func TestConcurrentLoadsReadTheirOwnEntryAndCounters(t *testing.T) {
	b := openTest(t, "")
	ctx := context.Background()
	ns := fmt.Sprintf("rctest:load:%x:", backend.FreshCounter())
	const keys = 8
	type fixture struct {
		key   string
		names []string
		vals  []uint64
	}
	fx := make([]fixture, keys)
	for i := range fx {
		f := &fx[i]
		f.key = fmt.Sprintf("%se:%d", ns, i)
		var snaps []backend.CounterSnap
		for j := range i % 6 { // 0 to 5 counters: the pooled reads grow
			name := fmt.Sprintf("%sv:%d:%d", ns, i, j)
			v := uint64(1000*i + j + 1)
			if err := b.client.Set(ctx, name, v, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			f.names = append(f.names, name)
			f.vals = append(f.vals, v)
			snaps = append(snaps, backend.CounterSnap{Name: name, Value: v})
		}
		if err := b.Store(ctx, f.key, testEntry(f.key, snaps...), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 * keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := fx[g%keys]
			got := make([]uint64, len(f.names))
			for range 50 {
				e, err := b.Load(ctx, f.key, f.names, got)
				if err != nil {
					t.Error(err)
					return
				}
				if e == nil || e.Key != f.key || string(e.Body) != "body of "+f.key {
					t.Errorf("Load(%s) read another entry: %+v", f.key, e)
					return
				}
				for j := range got {
					if got[j] != f.vals[j] {
						t.Errorf("Load(%s) counter %s = %d, want %d", f.key, f.names[j], got[j], f.vals[j])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// A lookup that failed leaves nothing behind for the next one to read:
// after a hit and a failed lookup, a missing key is a miss and its
// missing counter reads 0.
func TestLoadAfterAFailedLoadReadsItsOwnAnswer(t *testing.T) {
	b := openTest(t, "")
	ctx := context.Background()
	ns := fmt.Sprintf("rctest:loadfail:%x:", backend.FreshCounter())
	key, name := ns+"e:present", ns+"v:present"
	if err := b.client.Set(ctx, name, 77, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, key, testEntry(key, backend.CounterSnap{Name: name, Value: 77}), time.Minute); err != nil {
		t.Fatal(err)
	}
	vals := []uint64{0}
	if e, err := b.Load(ctx, key, []string{name}, vals); err != nil || e == nil || vals[0] != 77 {
		t.Fatalf("hit: %v %v %v", e, err, vals)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if e, err := b.Load(done, ns+"e:other", []string{name}, vals); err == nil {
		t.Fatalf("a lookup under a cancelled context succeeded: %v", e)
	}
	vals[0] = 99
	e, err := b.Load(ctx, ns+"e:missing", []string{ns + "v:missing"}, vals)
	if err != nil || e != nil || vals[0] != 0 {
		t.Fatalf("missing key after a failed lookup: entry %v, err %v, counter %d; want a miss and 0", e, err, vals[0])
	}
}
