package core_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/memory"
)

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		cfg  core.Config
		want string
	}{
		{"no regions", core.Config{}, "routecache: config has no regions"},
		{"bad name", core.Config{Regions: map[string]core.RegionConfig{"a b": {}}}, `region "a b": name must match`},
		{"negative ttl", core.Config{Regions: map[string]core.RegionConfig{"a": {TTL: -time.Second}}}, `region "a": TTL -1s is negative`},
		{"negative stale", core.Config{Regions: map[string]core.RegionConfig{"a": {Stale: -1}}}, "Stale -1ns is negative"},
		{"negative cap", core.Config{Regions: map[string]core.RegionConfig{"a": {MaxEntryBytes: -1}}}, "MaxEntryBytes -1 is negative"},
		{"bad status", core.Config{Regions: map[string]core.RegionConfig{"a": {Statuses: []int{99}}}}, "status 99 cannot be cached"},
		{"206", core.Config{Regions: map[string]core.RegionConfig{"a": {Statuses: []int{206}}}}, "status 206 cannot be cached"},
		{"bad vary", core.Config{Regions: map[string]core.RegionConfig{"a": {VaryHeaders: []string{"Bad Header"}}}}, `VaryHeaders: "Bad Header" is not a header name`},
		{"bad cookie", core.Config{Regions: map[string]core.RegionConfig{"a": {VaryCookies: []string{"a=b"}}}}, `cookie name "a=b" is not valid`},
		{"bad prefix", core.Config{Regions: map[string]core.RegionConfig{"a": {Prefix: "a b"}}}, `Prefix "a b" must match`},
		{"unknown scheme", core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: "ftp://x"}}}, `unknown scheme "ftp"`},
		{"no scheme", core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: "localhost"}}}, "missing scheme"},
		{"bad max_bytes", core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: "memory://?max_bytes=lots"}}}, `max_bytes: bad size "lots"`},
		{"unknown memory option", core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: "memory://?size=1"}}}, `unknown option "size"`},
		{"memory host", core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: "memory://host"}}}, "takes no host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := core.New(tc.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "routecache: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDefaultsApplied(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {}, "b": {Backend: "memory://?max_bytes=1MiB"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, _ := c.Region("a")
	cfg := r.Config()
	if cfg.TTL != core.DefaultTTL || cfg.MaxEntryBytes != core.DefaultMaxEntryBytes || cfg.Prefix != core.DefaultPrefix ||
		cfg.Backend != "memory://" || len(cfg.Statuses) != 1 || cfg.Statuses[0] != 200 || cfg.FillTimeout != core.DefaultFillTimeout {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if mb := core.RegionBackend(c, "b").(*memory.Backend); mb.MaxBytes() != 1<<20 {
		t.Fatalf("max_bytes = %d", mb.MaxBytes())
	}
	if got := c.Regions(); len(got) != 2 || got[0] != "a" {
		t.Fatalf("Regions() = %v", got)
	}
}

func TestConstructionErrors(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Route("nope"); err == nil || !strings.Contains(err.Error(), `unknown region "nope"`) {
		t.Fatalf("unknown region: %v", err)
	}
	if _, err := c.Route("a", core.Tags("x:{")); err == nil {
		t.Fatal("bad tag template accepted")
	}
	if _, err := c.Route("a", core.Key("a"), core.Key("b")); err == nil {
		t.Fatal("two keys accepted")
	}
	// Options of invalidating routes are not options of cached ones (nor
	// the reverse): misuse does not compile.
	if _, ok := any(core.Regions("a")).(core.RouteOption); ok {
		t.Fatal("Regions is a RouteOption")
	}
	if _, ok := any(core.Key("a")).(core.InvalidateOption); ok {
		t.Fatal("Key is an InvalidateOption")
	}
	if _, err := c.Invalidator(); err == nil {
		t.Fatal("empty invalidator accepted")
	}
	if _, err := c.Invalidator(core.Regions("nope")); err == nil {
		t.Fatal("unknown region accepted by Invalidator")
	}
	if _, err := c.Invalidator(core.Keys("nope", "{path}")); err == nil {
		t.Fatal("unknown key region accepted")
	}
	ctx := context.Background()
	if err := c.InvalidateRegion(ctx, "nope"); err == nil {
		t.Fatal("InvalidateRegion of unknown region")
	}
	if err := c.InvalidateKey(ctx, "a", ""); err == nil {
		t.Fatal("empty key accepted")
	}
	if err := c.InvalidateTags(ctx, ""); err == nil {
		t.Fatal("empty tag accepted")
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"1": 1, "64MiB": 64 << 20, "2KiB": 2048, "1GiB": 1 << 30, "5MB": 5e6, "10B": 10}
	for in, want := range good {
		if got, err := backend.ParseBytes(in); err != nil || got != want {
			t.Errorf("backend.ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "MiB", "1TiB", "1.5MiB", "99999999999999999999"} {
		if _, err := backend.ParseBytes(bad); err == nil {
			t.Errorf("backend.ParseBytes(%q) accepted", bad)
		}
	}
}
