package core_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// A response computed before an invalidation and stored after it is never
// served: the handler is held mid-flight while the tag is invalidated.
func TestInvalidationDuringFillIsNotServed(t *testing.T) {
	for _, kind := range []string{"tag", "region", "key"} {
		t.Run(kind, func(t *testing.T) {
			c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rt, err := c.Route("r", core.Tags("item:{id}"))
			if err != nil {
				t.Fatal(err)
			}
			p := mapParams{"id": "1"}
			var version atomic.Int64
			entered, release := make(chan struct{}), make(chan struct{})
			var calls atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				v := version.Load() // the handler reads the data...
				if calls.Add(1) == 1 {
					close(entered)
					<-release // ...and is slow to answer
				}
				fmt.Fprint(w, v)
			}
			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- serveOnce(rt, "/items/1", p, h) }()
			<-entered
			version.Add(1) // the data changes, then the cache is told
			ctx := context.Background()
			switch kind {
			case "tag":
				err = c.InvalidateTags(ctx, "item:1")
			case "region":
				err = c.InvalidateRegion(ctx, "r")
			case "key":
				err = c.InvalidateKey(ctx, "r", "/items/1")
			}
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			if w := <-done; w.Body.String() != "0" || w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("first response: %q %q", w.Header().Get("X-Cache"), w.Body.String())
			}
			if st := c.Stats()["r"]; st.Stores != 1 {
				t.Fatalf("the old response should have been stored (to prove it is not served); stores=%d", st.Stores)
			}
			w := serveOnce(rt, "/items/1", p, h)
			if w.Body.String() != "1" || w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("after invalidation got %q %q, want MISS 1", w.Header().Get("X-Cache"), w.Body.String())
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Body.String() != "1" || w.Header().Get("X-Cache") != "HIT" {
				t.Fatalf("refill not served: %q %q", w.Header().Get("X-Cache"), w.Body.String())
			}
		})
	}
}

// Writers change the data and invalidate; readers must never get data
// older than the last invalidation that completed before they started.
func TestInvalidationRaces(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("r", core.Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	const keys = 4
	var data [keys]atomic.Int64      // the "database"
	var committed [keys]atomic.Int64 // versions whose invalidation has completed
	var stale, served atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		fmt.Fprint(w, data[id].Load())
	}
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	// A writer invalidates again as soon as a reader has hit the entry
	// filled after its last invalidation: reads and invalidations
	// interleave however busy the machine is, paced by events, not time.
	var hitAt [keys]atomic.Int64 // highest floor at which a read hit
	var wake [keys]chan struct{}
	for i := range wake {
		wake[i] = make(chan struct{}, 1)
	}
	readersDone := make(chan struct{})
	var wg, writers sync.WaitGroup
	for id := 0; id < keys; id++ {
		writers.Add(1)
		go func(id int) { // one writer per key, until the readers finish
			defer writers.Done()
			for {
				v := data[id].Add(1)
				if err := c.InvalidateTags(context.Background(), "item:"+strconv.Itoa(id)); err != nil {
					t.Error(err)
					return
				}
				committed[id].Store(v)
				for hitAt[id].Load() < v {
					select {
					case <-wake[id]:
					case <-readersDone:
						return
					}
				}
			}
		}(id)
	}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds*2; i++ {
				id := (g + i) % keys
				floor := committed[id].Load()
				req := httptest.NewRequest("GET", "/items/"+strconv.Itoa(id), nil)
				req.SetPathValue("id", strconv.Itoa(id))
				w := httptest.NewRecorder()
				_ = adapter.ServeRoute(rt, w, req, adapter.PathValues{R: req}, "/items/{id}", func(w http.ResponseWriter, r *http.Request) error {
					h(w, r)
					return nil
				})
				b, _ := io.ReadAll(w.Body)
				got, err := strconv.ParseInt(string(b), 10, 64)
				if err != nil {
					t.Errorf("bad body %q", b)
					return
				}
				served.Add(1)
				if got < floor {
					stale.Add(1)
				}
				if w.Header().Get("X-Cache") == "HIT" {
					for at := hitAt[id].Load(); at < floor && !hitAt[id].CompareAndSwap(at, floor); at = hitAt[id].Load() {
					}
					select {
					case wake[id] <- struct{}{}:
					default:
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(readersDone)
	writers.Wait()
	st := c.Stats()["r"]
	t.Logf("served %d, hits %d, misses %d, stores %d, coalesced %d", served.Load(), st.Hits, st.Misses, st.Stores, st.Coalesced)
	if stale.Load() != 0 {
		t.Fatalf("%d of %d responses were older than a completed invalidation", stale.Load(), served.Load())
	}
	if st.Hits == 0 || st.Misses < 10 {
		t.Fatalf("hits %d, misses %d: the test did not interleave reads and invalidations", st.Hits, st.Misses)
	}
}

// A tag naming a request header is not part of the key: two requests that
// share a key may name different tag counters. A request takes only an
// entry whose producer read every counter it names, so an entry stored
// for one team is a miss for another (whose tag may have been invalidated
// since), and each team's invalidation ends its own team's hits.
func TestHeaderTagEntryServesOnlyRequestsNamingItsCounters(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("r", core.Tags("team:{header:X-Team}"))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	serve := func(team string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/board", nil)
		req.Header.Set("X-Team", team)
		_ = adapter.ServeRoute(rt, w, req, noParams, "/board", func(w http.ResponseWriter, r *http.Request) error {
			fmt.Fprintf(w, "board %d", calls.Add(1))
			return nil
		})
		return w
	}
	if w := serve("a"); w.Header().Get("X-Cache") != "MISS" {
		t.Fatalf("first: %q", w.Header().Get("X-Cache"))
	}
	if w := serve("b"); w.Header().Get("X-Cache") != "MISS" || w.Body.String() != "board 2" {
		t.Fatalf("same key, other team, on an entry that never read team:b: %q %q", w.Header().Get("X-Cache"), w.Body.String())
	}
	if w := serve("b"); w.Header().Get("X-Cache") != "HIT" || w.Body.String() != "board 2" {
		t.Fatalf("team b again: %q %q", w.Header().Get("X-Cache"), w.Body.String())
	}
	if err := c.InvalidateTags(context.Background(), "team:b"); err != nil {
		t.Fatal(err)
	}
	if w := serve("b"); w.Header().Get("X-Cache") != "MISS" || w.Body.String() != "board 3" {
		t.Fatalf("after invalidating team:b: %q %q", w.Header().Get("X-Cache"), w.Body.String())
	}
}
