package core

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/routecache/routecache/core/internal/bridge"
)

// A hit allocates nothing, through handle (net/http, adapter.ServeRoute)
// and through handleCtx (adapter.ServeRouteCtx, the request's context
// carrying the parameters and the rest of the chain).
func TestHitAllocatesNothing(t *testing.T) {
	if observerTestRace {
		t.Skip("allocation counts are checked without -race (sync.Pool drops items at random under -race)")
	}
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("r", Tags("item:{id}", "items"))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/items/1?a=1", nil)
	w := &discardWriter{h: http.Header{}}
	ctx := mapParams{"id": "1"}
	f := &bridge.Funcs{
		Params: func(ctx any, name string) (string, bool) { return ctx.(mapParams).Get(name) },
		Next: func(_, _ any, w http.ResponseWriter, _ *http.Request) error {
			_, err := io.WriteString(w, "body")
			return err
		},
	}
	if ran, err := rt.handleCtx(w, req, "/items/:id", ctx, nil, f); err != nil || !ran {
		t.Fatalf("fill: ran %v, %v", ran, err)
	}
	n := testing.AllocsPerRun(200, func() {
		clear(w.h)
		if ran, err := rt.handleCtx(w, req, "/items/:id", ctx, nil, f); err != nil || ran {
			t.Fatalf("hit: ran %v, %v", ran, err)
		}
	})
	if w.h.Get("X-Cache") != "HIT" {
		t.Fatalf("X-Cache %q", w.h.Get("X-Cache"))
	}
	if n != 0 {
		t.Fatalf("a hit through handleCtx allocates %v times", n)
	}
	next := func(w http.ResponseWriter, _ *http.Request) error { _, err := io.WriteString(w, "body"); return err }
	n = testing.AllocsPerRun(200, func() {
		clear(w.h)
		if err := rt.handle(w, req, ctx, "/items/:id", next); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("a hit through handle allocates %v times", n)
	}
}
