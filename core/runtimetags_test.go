package core_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// The runtime tags' settings are validated by New.
func TestRuntimeTagsConfig(t *testing.T) {
	for _, rc := range []core.RegionConfig{
		{MaxTags: -1},
		{TagHeaders: []string{""}},
		{TagHeaders: []string{"Surrogate Key"}},
	} {
		if c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}}); err == nil {
			c.Close()
			t.Errorf("New accepted %+v", rc)
		} else if !strings.HasPrefix(err.Error(), "routecache: ") {
			t.Errorf("error %q lacks the prefix", err)
		}
	}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, _ := c.Region("r")
	if got := r.Config().MaxTags; got != core.DefaultMaxTags {
		t.Fatalf("MaxTags default %d, want %d", got, core.DefaultMaxTags)
	}
}

// A refresh (stale-while-revalidate) and a fill held back for its
// stale-if-error fallback take their tags from the headers as a plain
// miss does: the headers reach no client, and the new entry carries the
// tags the refreshed response named.
func TestRuntimeTagsRefreshAndHeldFill(t *testing.T) {
	for name, rc := range map[string]core.RegionConfig{
		"refresh": {TTL: 50 * time.Millisecond, Stale: time.Hour},
		"held":    {TTL: 50 * time.Millisecond, StaleIfError: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			rc.TagHeaders = []string{"Surrogate-Key"}
			rt := testRoute(t, rc)
			c := core.RouteCache(rt)
			var calls atomic.Int64
			next := func(w http.ResponseWriter, r *http.Request) error {
				n := calls.Add(1)
				core.AddTags(r.Context(), fmt.Sprintf("added:%d", n))
				w.Header().Set("Surrogate-Key", fmt.Sprintf("v:%d", n))
				_, err := fmt.Fprintf(w, "v%d", n)
				return err
			}
			get := func(wantCache, wantBody string) {
				t.Helper()
				w := serveNext(rt, http.MethodGet, "/items/1", next)
				if xc(w) != wantCache || w.Body.String() != wantBody || w.Header().Get("Surrogate-Key") != "" {
					t.Fatalf("got %s %q Surrogate-Key=%q, want %s %q and no Surrogate-Key", xc(w), w.Body.String(), w.Header().Get("Surrogate-Key"), wantCache, wantBody)
				}
			}
			get("MISS", "v1")
			get("HIT", "v1")
			if name == "refresh" {
				waitState(t, rt, "/items/1", core.StaleOK)
				get("STALE", "v1") // and refreshed on this goroutine: v2
			} else {
				waitState(t, rt, "/items/1", core.ErrorOnly)
				get("MISS", "v2") // held back, then released
			}
			get("HIT", "v2")
			// The new entry carries the new response's tags, not the old.
			if err := c.InvalidateTags(context.Background(), "v:1", "added:1"); err != nil {
				t.Fatal(err)
			}
			get("HIT", "v2")
			if err := c.InvalidateTags(context.Background(), "v:2"); err != nil {
				t.Fatal(err)
			}
			get("MISS", "v3")
			if err := c.InvalidateTags(context.Background(), "added:3"); err != nil {
				t.Fatal(err)
			}
			get("MISS", "v4")
		})
	}
}

// Goroutines the handler starts may add tags until it returns; a tag added
// after that is ignored and counted, and does not reach the stored entry.
func TestRuntimeTagsGoroutines(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{})
	c := core.RouteCache(rt)
	late, lateDone := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		n := calls.Add(1)
		ctx := r.Context()
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				core.AddTags(ctx, fmt.Sprintf("g:%d", i), "shared")
			}()
		}
		wg.Wait()
		if n == 1 {
			go func() {
				defer close(lateDone)
				<-late
				core.AddTags(ctx, "late")
			}()
		}
		_, err := fmt.Fprintf(w, "v%d", n)
		return err
	}
	get := func(want, body string) {
		t.Helper()
		if w := serveNext(rt, http.MethodGet, "/items/1", next); xc(w) != want || w.Body.String() != body {
			t.Fatalf("got %s %q, want %s %q", xc(w), w.Body.String(), want, body)
		}
	}
	get("MISS", "v1")
	close(late)
	<-lateDone
	if st := c.Stats()["r"]; st.InvalidTags != 1 {
		t.Fatalf("InvalidTags %d, want 1 (the late tag)", st.InvalidTags)
	}
	if err := c.InvalidateTags(context.Background(), "late"); err != nil {
		t.Fatal(err)
	}
	get("HIT", "v1")
	if err := c.InvalidateTags(context.Background(), "g:5"); err != nil {
		t.Fatal(err)
	}
	get("MISS", "v2")
	get("HIT", "v2")
	if err := c.InvalidateTags(context.Background(), "shared"); err != nil {
		t.Fatal(err)
	}
	get("MISS", "v3")
}
