package core_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// A fill whose tag is invalidated while its handler runs stores its entry
// (never served: its snapshot predates the bump) but does not hand it to
// the requests that waited for it, though they looked the key up before
// the invalidation too: the check after storing sees the bump, and they
// run the handler themselves, after the invalidation completed. On the
// memory store (the check reads what the store holds for the entry) and
// on Redis (it reads the counters from the store).
func TestFillInvalidatedWhileRunningIsNotHandedToWaiters(t *testing.T) {
	urls := map[string]string{"memory": "memory://"}
	if addr := testServerOptional(t, "ROUTECACHE_TEST_REDIS"); addr != "" {
		urls["redis"] = "redis://" + addr + "/0"
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			c := newBackendCache(t, url, core.RegionConfig{})
			rt, err := c.Route("r", core.Tags("items"))
			if err != nil {
				t.Fatal(err)
			}
			started, release := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			h := func(w http.ResponseWriter, _ *http.Request) {
				if calls.Add(1) == 1 {
					close(started)
					<-release
					_, _ = io.WriteString(w, "before")
					return
				}
				_, _ = io.WriteString(w, "after")
			}
			lead, wait := make(chan *httptest.ResponseRecorder), make(chan *httptest.ResponseRecorder)
			go func() { lead <- serveOnce(rt, "/items/1", mapParams{"id": "1"}, h) }()
			<-started
			go func() { wait <- serveOnce(rt, "/items/1", mapParams{"id": "1"}, h) }()
			waitUntil(t, "the second request to wait on the fill", func() bool { return flightWaiters() == 1 })
			if err := c.InvalidateTags(context.Background(), "items"); err != nil {
				t.Fatal(err)
			}
			close(release)
			if w := <-lead; xc(w) != "MISS" || w.Body.String() != "before" {
				t.Fatalf("leader: %q %q, want its own MISS", xc(w), w.Body.String())
			}
			if w := <-wait; w.Body.String() != "after" {
				t.Fatalf("waiter: %q %q, want the handler run after the invalidation (%d calls)", xc(w), w.Body.String(), calls.Load())
			}
		})
	}
}
