package adapter_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// AsResponseWriter finds the engine's writer on a miss and on an
// invalidating route, and reports false for the client's own writer (a
// bypass runs the chain with it).
func TestAsResponseWriter(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {TTL: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rt, err := rc.Route("r", core.Tags("t"))
	if err != nil {
		t.Fatal(err)
	}
	iv, err := rc.Invalidator(core.Tags("t"))
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	next := func(w http.ResponseWriter, r *http.Request) error {
		rw, ok := adapter.AsResponseWriter(w)
		got = append(got, ok)
		if ok && (rw.Written() || rw.Status() != 0 || rw.Size() != 0) {
			t.Errorf("fresh writer: written %v status %d size %d", rw.Written(), rw.Status(), rw.Size())
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok"))
		if ok && (!rw.Written() || rw.Status() != http.StatusOK || rw.Size() != 2) {
			t.Errorf("after a write: written %v status %d size %d", rw.Written(), rw.Status(), rw.Size())
		}
		return nil
	}
	_ = adapter.ServeRoute(rt, httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil), adapter.NoParams, "/x", next)
	_ = adapter.ServeRoute(rt, httptest.NewRecorder(), httptest.NewRequest("DELETE", "/x", nil), adapter.NoParams, "/x", next)
	_ = adapter.ServeInvalidator(iv, httptest.NewRecorder(), httptest.NewRequest("POST", "/x", nil), adapter.NoParams, next)
	if want := []bool{true, false, true}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("AsResponseWriter ok on miss, bypass, invalidation = %v, want %v", got, want)
	}
	if _, ok := adapter.AsResponseWriter(httptest.NewRecorder()); ok {
		t.Fatal("an httptest.ResponseRecorder reported as the engine's writer")
	}
}

// PathValues reads a net/http request's path values.
func TestPathValues(t *testing.T) {
	req := httptest.NewRequest("GET", "/a/1", nil)
	req.SetPathValue("id", "1")
	p := adapter.PathValues{R: req}
	if v, ok := p.Get("id"); !ok || v != "1" {
		t.Fatalf("Get(id) = %q, %v", v, ok)
	}
	if _, ok := p.Get("nope"); ok {
		t.Fatal("missing value reported present")
	}
	if _, ok := adapter.NoParams.Get("id"); ok {
		t.Fatal("NoParams has a value")
	}
}
