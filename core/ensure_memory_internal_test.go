package core

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// On the memory store, a fill's entry carries the counter values its
// lookup read (call.ensure reads only the tag epoch): a tag invalidated
// between the lookup and the fill leaves the entry stored with the value
// before it, so that it is never served, and its waiters are not handed
// it (the check after storing).
func TestMemoryFillCarriesTheLookupsCounters(t *testing.T) {
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("r", Tags("item:{id}", "items"))
	if err != nil {
		t.Fatal(err)
	}
	if rt.r.mem == nil {
		t.Fatal("not the memory store")
	}
	req := httptest.NewRequest("GET", "/items/1", nil)
	p := params(mapParams{"id": "1"})
	st := getState()
	defer putState(st)
	if !rt.build(st, req, p, "/items/:id") {
		t.Fatal("build")
	}
	w := httptest.NewRecorder()
	call := rt.call(st, w, req)
	_ = rt.r.mem.Counters(call.ctx, call.names, call.vals) // the lookup's read
	before := append([]uint64(nil), call.vals...)
	if err := c.InvalidateTags(context.Background(), "items"); err != nil {
		t.Fatal(err)
	}
	if err := call.miss(func(w http.ResponseWriter, _ *http.Request) error {
		_, err := io.WriteString(w, "v1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if xcache(w) != "MISS" || w.Body.String() != "v1" {
		t.Fatalf("fill: %q %q", xcache(w), w.Body.String())
	}
	e := rt.r.mem.Entry(call.skey)
	if e == nil {
		t.Fatal("the fill stored nothing")
	}
	for i, s := range e.Counters {
		if s.Value != before[i] {
			t.Fatalf("counter %s: the entry carries %d, the lookup read %d", s.Name, s.Value, before[i])
		}
	}
	if w := memServe(t, rt, "/items/1", "1", "v2"); xcache(w) != "MISS" || w.Body.String() != "v2" {
		t.Fatalf("after the invalidation: %q %q, want a MISS answering v2", xcache(w), w.Body.String())
	}
}
