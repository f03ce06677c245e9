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
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?near_max_bytes=4MiB"
	c := newBackendCache(t, url, core.RegionConfig{TTL: time.Hour})
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(1<<20-1024))
		fmt.Fprint(w, "short body")
	}
	before := liveHeap()
	for i := 0; i < 200; i++ {
		serveOnce(rt, fmt.Sprintf("/cl/%d", i), noParams, h)
	}
	held := liveHeap() - before
	runtime.KeepAlive(c)
	t.Logf("200 entries of 10 bytes declared at ~1 MiB: %.1f MiB live for near_max_bytes=4MiB", float64(held)/(1<<20))
	if held > 8<<20 {
		t.Fatalf("near cache of 4 MiB holds %d MiB", held>>20)
	}
}

// A handler writing a 520 KiB body in 4 KiB writes: the recorder doubles
// its buffer to 1 MiB; the near L1 must hold what it charges (520 KiB),
// not the doubled buffer.
func TestNearL1BoundWithBodiesWrittenInChunks(t *testing.T) {
	url := "redis://" + testServer(t, "ROUTECACHE_TEST_REDIS") + "/0?near_max_bytes=16MiB"
	c := newBackendCache(t, url, core.RegionConfig{TTL: time.Hour})
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 4096)
	h := func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 130; i++ {
			w.Write(chunk)
		}
	}
	before := liveHeap()
	for i := 0; i < 60; i++ {
		serveOnce(rt, fmt.Sprintf("/g/%d", i), noParams, h)
	}
	held := liveHeap() - before
	runtime.KeepAlive(c)
	t.Logf("%.1f MiB live for near_max_bytes=16MiB", float64(held)/(1<<20))
	if held > 17<<20 {
		t.Fatalf("near cache of 16 MiB holds %d MiB", held>>20)
	}
}
