package core_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core"
)

// A region on a gocache Store gets the circuit breaker of the backends
// outside the process (docs/backends.md): a store whose server refuses
// every connection opens it after Failures consecutive errors, and the
// requests that follow skip the store while it is open, answered by the
// handler.
func TestStoreHasBreaker(t *testing.T) {
	// A port nothing listens on: take a free one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer client.Close()

	rc, err := core.New(core.Config{
		Regions: map[string]core.RegionConfig{"s": {Store: redisstore.NewRedis(client)}},
		Breaker: core.BreakerConfig{Failures: 2, Cooldown: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	mw, err := rc.Middleware("s")
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	for i := 0; i < 10 && rc.Stats()["s"].BreakerOpens == 0; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
		if w.Code != http.StatusOK || w.Body.String() != "ok" {
			t.Fatalf("request %d failed: %d %q", i, w.Code, w.Body.String())
		}
	}
	st := rc.Stats()["s"]
	if st.BreakerOpens != 1 || st.Breaker != core.BreakerOpen {
		t.Fatalf("breaker not opened by the failing store: %+v", st)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if w.Code != http.StatusOK || rc.Stats()["s"].Bypasses[core.BypassBreaker] == 0 {
		t.Fatalf("open breaker did not skip the store: %d %+v", w.Code, rc.Stats()["s"])
	}
}
