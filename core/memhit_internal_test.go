package core

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// memServe serves one GET of target through rt with the parameter id,
// its handler writing body.
func memServe(t *testing.T, rt *Route, target, id, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	err := rt.handle(w, httptest.NewRequest("GET", target, nil), mapParams{"id": id}, "/items/:id", func(w http.ResponseWriter, _ *http.Request) error {
		_, err := io.WriteString(w, body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// A hit on the memory store reads its entry before building the counter
// names (Route.serve, keyedHit): an early refresh started by such a hit
// builds them then, and the entry it stores depends on exactly the
// counters a lookup names, so that invalidating any of them (the region,
// the key, a static tag, a templated tag) still ends its hits.
func TestMemoryHitEarlyRefreshStoresTheRequestCounters(t *testing.T) {
	for _, inv := range []string{"region", "key", "tag items", "tag item:1"} {
		t.Run(inv, func(t *testing.T) {
			// An EarlyRefresh this large refreshes on every hit.
			c, err := New(Config{Regions: map[string]RegionConfig{"r": {EarlyRefresh: 1e12}}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rt, err := c.Route("r", Tags("item:{id}", "items"))
			if err != nil {
				t.Fatal(err)
			}
			if rt.r.mem == nil || !rt.namesFromKey {
				t.Fatal("not the memory hit path")
			}
			if w := memServe(t, rt, "/items/1", "1", "v1"); xcache(w) != "MISS" {
				t.Fatalf("fill: %q", xcache(w))
			}
			if w := memServe(t, rt, "/items/1", "1", "v2"); xcache(w) != "HIT" || w.Body.String() != "v1" {
				t.Fatalf("hit: %q %q", xcache(w), w.Body.String())
			}
			if st := rt.r.Stats(); st.EarlyRefreshes != 1 || st.Refreshes != 1 {
				t.Fatalf("stats after the hit: %+v", st)
			}
			// The refreshed entry holds the counters the request names.
			st := getState()
			defer putState(st)
			req := httptest.NewRequest("GET", "/items/1", nil)
			if !rt.build(st, req, mapParams{"id": "1"}, "/items/:id") {
				t.Fatal("build")
			}
			e, err := rt.r.be.Load(context.Background(), string(st.key), st.names, st.vals)
			if err != nil || e == nil || string(e.Body) != "v2" {
				t.Fatalf("refreshed entry: %v %v", e, err)
			}
			var names []string
			for _, cs := range e.Counters {
				names = append(names, cs.Name)
			}
			if !slices.Equal(names, st.names) {
				t.Fatalf("refreshed entry's counters %q, the request's %q", names, st.names)
			}
			ctx := context.Background()
			switch inv {
			case "region":
				err = c.InvalidateRegion(ctx, "r")
			case "key":
				err = c.InvalidateKey(ctx, "r", "/items/1")
			case "tag items":
				err = c.InvalidateTags(ctx, "items")
			case "tag item:1":
				err = c.InvalidateTags(ctx, "item:1")
			}
			if err != nil {
				t.Fatal(err)
			}
			if w := memServe(t, rt, "/items/1", "1", "v3"); xcache(w) != "MISS" || w.Body.String() != "v3" {
				t.Fatalf("after invalidating %s: %q %q", inv, xcache(w), w.Body.String())
			}
		})
	}
}

func xcache(w *httptest.ResponseRecorder) string { return w.Header().Get("X-Cache") }

// A key too long for the buffer on the stack (appendStackKey), or one
// with keyed headers, is built in the pooled state: its hits are hits
// all the same, and allocate nothing.
func TestMemoryHitBeyondTheStackKey(t *testing.T) {
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
	long := "/items/1?q=" + strings.Repeat("x", stackKeyBytes)
	for _, tc := range []struct {
		name string
		req  *http.Request
	}{
		{"long key", httptest.NewRequest("GET", long, nil)},
		{"keyed header", func() *http.Request {
			r := httptest.NewRequest("GET", "/items/1", nil)
			r.Header.Set("X-Forwarded-Host", "example.com")
			return r
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := rt.appendStackKey(make([]byte, 0, stackKeyBytes), tc.req, "/items/:id"); ok {
				t.Fatal("built on the stack")
			}
			next := func(w http.ResponseWriter, _ *http.Request) error { _, err := io.WriteString(w, "body"); return err }
			w := &discardWriter{h: http.Header{}}
			p := mapParams{"id": "1"}
			if err := rt.handle(w, tc.req, p, "/items/:id", next); err != nil || w.h.Get("X-Cache") != "MISS" {
				t.Fatalf("fill: %q %v", w.h.Get("X-Cache"), err)
			}
			n := testing.AllocsPerRun(100, func() {
				clear(w.h)
				if err := rt.handle(w, tc.req, p, "/items/:id", next); err != nil {
					t.Fatal(err)
				}
			})
			if w.h.Get("X-Cache") != "HIT" || n != 0 {
				t.Fatalf("X-Cache %q, %v allocations", w.h.Get("X-Cache"), n)
			}
		})
	}
}
