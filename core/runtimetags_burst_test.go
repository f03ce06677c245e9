package core_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// A list page tags itself with every item it shows (AddTags), up to
// RegionConfig.MaxTags: a burst of cold requests for it, split over two
// Caches on one Redis (two replicas), with and without a near cache, runs
// the handler once, stores the entry once, and every later request is a
// HIT on both. Reading and ensuring 100+ tag counters after the fill must
// neither misread the epoch nor take the entry for invalidated.
//
// Past MaxTags (here the default, 64) the entry is not stored
// ("too-many-tags"), so each waiter then runs the handler itself: that is
// how a list page of 100 items fails to cache when the region's MaxTags
// is left at its default.
func TestManyRuntimeTagsOneOriginCallAcrossInstances(t *testing.T) {
	redis := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s"
	backends := map[string]string{
		"redis":      redis,
		"redis+near": redis + "&near_max_bytes=4MiB",
	}
	for name, url := range backends {
		for _, n := range []int{1, 10, 100, 150} {
			t.Run(fmt.Sprintf("%s/%dtags", name, n), func(t *testing.T) {
				taggedBurst(t, url, core.RegionConfig{MaxTags: 200, LeaseWait: longLeaseWait}, n, true)
			})
		}
		t.Run(name+"/100tags-default-MaxTags", func(t *testing.T) {
			taggedBurst(t, url, core.RegionConfig{LeaseWait: longLeaseWait}, 100, false)
		})
	}
}

// taggedBurst sends 40 concurrent cold requests, split over two instances,
// to a route whose handler adds ntags runtime tags. stored: the entry is
// within MaxTags and must be stored once after one origin call.
func taggedBurst(t *testing.T, url string, rc core.RegionConfig, ntags int, stored bool) {
	cs := instances(t, 2, url, rc)
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		tags := make([]string, ntags)
		for i := range tags {
			tags[i] = fmt.Sprintf("item:%d", i+1)
		}
		core.AddTags(r.Context(), tags...)
		fmt.Fprint(w, "list")
	}
	rts := make([]*core.Route, len(cs))
	for i, c := range cs {
		rt, err := c.Route("r", core.Tags("items"))
		if err != nil {
			t.Fatal(err)
		}
		rts[i] = rt
	}
	const burst = 40
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	for g := 0; g < burst; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			w := serveOnce(rts[g%len(rts)], "/items", noParams, h)
			mu.Lock()
			defer mu.Unlock()
			if w.Code != 200 || w.Body.String() != "list" {
				t.Errorf("request %d: %d %q", g, w.Code, w.Body.String())
			}
			statuses[xc(w)+" "+w.Header().Get("Cache-Status")]++
		}(g)
	}
	close(start)
	wg.Wait()
	var stores, leaseTimeouts uint64
	notStored := map[core.NotStoredReason]uint64{}
	for _, c := range cs {
		st := c.Stats()["r"]
		stores += st.Stores
		leaseTimeouts += st.LeaseTimeouts
		for k, v := range st.NotStored {
			notStored[k] += v
		}
	}
	t.Logf("%d tags: %d origin calls, %d stores, not stored %v, lease timeouts %d, answers %v",
		ntags, calls.Load(), stores, notStored, leaseTimeouts, statuses)
	if !stored {
		if notStored[core.NotStoredTooManyTags] == 0 || stores != 0 {
			t.Fatalf("%d tags over MaxTags: %d stores, not stored %v; want none stored (%q)", ntags, stores, notStored, core.NotStoredTooManyTags)
		}
		return
	}
	if c := calls.Load(); c != 1 || stores != 1 || len(notStored) != 0 {
		t.Fatalf("%d tags: %d origin calls, %d stores, not stored %v for %d cold requests over 2 instances; want 1 call, 1 store",
			ntags, c, stores, notStored, burst)
	}
	for i, rt := range rts {
		if w := serveOnce(rt, "/items", noParams, h); xc(w) != "HIT" {
			t.Fatalf("instance %d after the burst: %q (%s)", i, xc(w), w.Header().Get("Cache-Status"))
		}
	}
	// The tag of the last item shown, invalidated on one instance, drops
	// the page on the other (through pub/sub to its near cache, if any).
	if err := cs[0].InvalidateTags(t.Context(), fmt.Sprintf("item:%d", ntags)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("a MISS on the other instance after item:%d was invalidated", ntags), func() bool {
		return xc(serveOnce(rts[1], "/items", noParams, h)) == "MISS"
	})
	if c := calls.Load(); c != 2 {
		t.Fatalf("%d origin calls after the invalidation, want 2", c)
	}
}
