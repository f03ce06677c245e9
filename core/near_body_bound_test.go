package core_test

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// A handler that declares more Content-Length than it writes makes the
// recorder pre-size the body to the declared length; the near cache's L1
// keeps the entry itself, so the body must be trimmed to its length
// before it is charged: a 4 MiB near cache stays near 4 MiB.
func TestNearL1BoundWithOverstatedContentLength(t *testing.T) {
	nearHeldWithin(t, "4MiB", 8<<20, 200, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(1<<20-1024))
		fmt.Fprint(w, "short body")
	})
}

// A handler writing a 520 KiB body in 4 KiB writes: the recorder doubles
// its buffer to 1 MiB; the near L1 must hold what it charges (520 KiB),
// not the doubled buffer.
func TestNearL1BoundWithBodiesWrittenInChunks(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 4096)
	nearHeldWithin(t, "16MiB", 17<<20, 60, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 130; i++ {
			w.Write(chunk)
		}
	})
}

// nearHeldWithin fills n distinct keys with h through a Redis region with
// a near cache of nearMax, and fails if the heap then holds more than
// limit bytes beyond what it held before.
func nearHeldWithin(t *testing.T, nearMax string, limit int64, n int, h http.HandlerFunc) {
	t.Helper()
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?near_max_bytes=" + nearMax
	c := newBackendCache(t, url, core.RegionConfig{TTL: time.Hour})
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	before := liveHeap()
	for i := 0; i < n; i++ {
		serveOnce(rt, fmt.Sprintf("/bound/%d", i), noParams, h)
	}
	held := liveHeap() - before
	runtime.KeepAlive(c)
	t.Logf("%d entries: %.1f MiB live for near_max_bytes=%s", n, float64(held)/(1<<20), nearMax)
	if held > limit {
		t.Fatalf("near cache of %s holds %d MiB", nearMax, held>>20)
	}
}
