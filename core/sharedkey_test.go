package core_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// Two routes whose requests share a key (the same pattern in one region,
// or one Key template) but declare different tags each answer with a
// response no older than the last completed invalidation of their own
// tags: an entry the other route stored never read this route's tag, so
// it is a miss here, never a hit. On the memory store, Redis and a near
// cache, whichever route fills first.
func TestRoutesSharingAKeyHonourTheirOwnTags(t *testing.T) {
	cases := map[string]core.RegionConfig{"memory": {}}
	if addr := testServerOptional(t, "ROUTECACHE_TEST_REDIS"); addr != "" {
		cases["redis"] = core.RegionConfig{Backend: "redis://" + addr + "/0?timeout=5s", Prefix: uniquePrefix(t)}
		cases["near"] = core.RegionConfig{Backend: "redis://" + addr + "/0?timeout=5s&near_max_bytes=4MiB", Prefix: uniquePrefix(t)}
	}
	for name, rc := range cases {
		t.Run(name, func(t *testing.T) {
			c := rvCache(t, rc)
			routes := map[string]*core.Route{
				"a": rvRoute(t, c, core.Tags("a:{id}")),
				"b": rvRoute(t, c, core.Tags("b:{id}", "all-b")),
			}
			var version atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
			p := mapParams{"id": "1"}
			for _, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
				for _, inv := range []string{"a:1", "b:1", "all-b"} {
					for _, n := range order {
						if w := rvServe(routes[n], "GET", "/items/1", nil, p, h); w.Body.String() != fmt.Sprint(version.Load()) {
							t.Fatalf("%s before invalidating %s: %s %q, want %d", n, inv, xc(w), w.Body.String(), version.Load())
						}
					}
					version.Add(1)
					if err := c.InvalidateTags(context.Background(), inv); err != nil {
						t.Fatal(err)
					}
					for _, n := range order {
						if w := rvServe(routes[n], "GET", "/items/1", nil, p, h); w.Body.String() != fmt.Sprint(version.Load()) {
							t.Fatalf("%s filled first; after invalidating %s, %s answered %s %q, want %d", order[0], inv, n, xc(w), w.Body.String(), version.Load())
						}
					}
				}
			}
		})
	}
}

// A request waiting on another route's fill of the same key does not take
// its response when one of its own tags was invalidated after that fill
// began: the fill never read that tag.
func TestWaiterOnAnotherRoutesFillNeedsItsOwnTags(t *testing.T) {
	c := rvCache(t, core.RegionConfig{})
	a := rvRoute(t, c, core.Tags("a:{id}"))
	b := rvRoute(t, c, core.Tags("b:{id}"))
	var version atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request) {
		v := version.Load()
		close(entered)
		<-release
		fmt.Fprint(w, v)
	}
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, version.Load()) }
	p := mapParams{"id": "1"}
	done := make(chan string, 2)
	go func() { done <- rvServe(a, "GET", "/items/1", nil, p, slow).Body.String() }()
	<-entered
	version.Store(1)
	if err := c.InvalidateTags(context.Background(), "b:1"); err != nil {
		t.Fatal(err)
	}
	waiting := flightWaiters()
	go func() { done <- "b:" + rvServe(b, "GET", "/items/1", nil, p, h).Body.String() }()
	waitUntil(t, "b's request to wait on a's fill", func() bool { return flightWaiters() == waiting+1 })
	close(release)
	for i := 0; i < 2; i++ {
		if got := <-done; got == "b:0" {
			t.Fatalf("b answered %q: a's fill began before b:1 was invalidated", got)
		}
	}
}
