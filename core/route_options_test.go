package core_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// Route options are checked when the route is built, with errors that
// name the option.
func TestRouteOptionsValidated(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	skip := func(*http.Request) bool { return false }
	part := func(*http.Request) string { return "" }
	cases := []struct {
		opts []core.RouteOption
		want string
	}{
		{[]core.RouteOption{core.TTL(0)}, "routecache: TTL 0s must be positive"},
		{[]core.RouteOption{core.TTL(-time.Second)}, "routecache: TTL -1s must be positive"},
		{[]core.RouteOption{core.TTL(time.Second), core.TTL(time.Minute)}, "routecache: TTL given twice"},
		{[]core.RouteOption{core.StaleFor(-time.Second, 0)}, "routecache: StaleFor(-1s, 0s): windows must not be negative"},
		{[]core.RouteOption{core.StaleFor(0, 0), core.StaleFor(time.Second, 0)}, "routecache: StaleFor given twice"},
		{[]core.RouteOption{core.SkipIf(nil)}, "routecache: SkipIf: nil function"},
		{[]core.RouteOption{core.SkipIf(skip), core.SkipIf(skip)}, "routecache: SkipIf given twice"},
		{[]core.RouteOption{core.KeyFunc(nil)}, "routecache: KeyFunc: nil function"},
		{[]core.RouteOption{core.KeyFunc(part), core.KeyFunc(part)}, "routecache: KeyFunc given twice"},
	}
	for _, tc := range cases {
		if _, err := c.Route("r", tc.opts...); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if _, err := c.Route("r", core.TTL(time.Second), core.StaleFor(time.Minute, time.Hour), core.SkipIf(skip), core.KeyFunc(part)); err != nil {
		t.Fatalf("valid options: %v", err)
	}
}

// StatusTTL refuses what Statuses refuses, and lifetimes that are not
// positive.
func TestStatusTTLValidated(t *testing.T) {
	cases := map[int]string{
		304: "status 304 cannot be cached: it answers a range or conditional request",
		206: "status 206 cannot be cached",
		99:  "status 99 cannot be cached",
	}
	for status, want := range cases {
		_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {StatusTTL: map[int]time.Duration{status: time.Second}}}})
		if err == nil || !strings.Contains(err.Error(), `routecache: region "r": StatusTTL: `+want) {
			t.Errorf("StatusTTL %d: got %v, want %q", status, err, want)
		}
	}
	_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {StatusTTL: map[int]time.Duration{404: 0}}}})
	if err == nil || err.Error() != `routecache: region "r": StatusTTL: status 404: TTL 0s must be positive` {
		t.Errorf("StatusTTL 404: 0: got %v", err)
	}
}

// KeyFunc's part keeps requests apart in the key without its value
// appearing there: the key is stored in every entry, in the backend.
func TestKeyFuncPartKeyedNotInClear(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{}, core.KeyFunc(func(r *http.Request) string { return r.Header.Get("X-Tenant") }))
	acme := keyOf(t, rt, "GET", "/home", nil, "X-Tenant", "tenant-acme-secret")
	globex := keyOf(t, rt, "GET", "/home", nil, "X-Tenant", "tenant-globex-secret")
	none := keyOf(t, rt, "GET", "/home", nil)
	if acme == globex || acme == none || globex == none {
		t.Fatal("KeyFunc parts do not keep the keys apart")
	}
	for _, k := range []string{acme, globex} {
		if strings.Contains(k, "tenant-") {
			t.Fatalf("the KeyFunc value is in the key in clear: %q", k)
		}
	}
	// A route without KeyFunc never shares a key with one that has it.
	plain := testRoute(t, core.RegionConfig{})
	if keyOf(t, plain, "GET", "/home", nil) == none {
		t.Fatal("a route with KeyFunc shares its key with one without")
	}
}
