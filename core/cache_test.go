package core

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend/memory"
)

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no regions", Config{}, "routecache: config has no regions"},
		{"bad name", Config{Regions: map[string]RegionConfig{"a b": {}}}, `region "a b": name must match`},
		{"negative ttl", Config{Regions: map[string]RegionConfig{"a": {TTL: -time.Second}}}, `region "a": TTL -1s is negative`},
		{"negative stale", Config{Regions: map[string]RegionConfig{"a": {Stale: -1}}}, "Stale -1ns is negative"},
		{"negative cap", Config{Regions: map[string]RegionConfig{"a": {MaxEntryBytes: -1}}}, "MaxEntryBytes -1 is negative"},
		{"bad status", Config{Regions: map[string]RegionConfig{"a": {Statuses: []int{99}}}}, "status 99 cannot be cached"},
		{"206", Config{Regions: map[string]RegionConfig{"a": {Statuses: []int{206}}}}, "status 206 cannot be cached"},
		{"bad vary", Config{Regions: map[string]RegionConfig{"a": {VaryHeaders: []string{"Bad Header"}}}}, `VaryHeaders: "Bad Header" is not a header name`},
		{"bad cookie", Config{Regions: map[string]RegionConfig{"a": {VaryCookies: []string{"a=b"}}}}, `cookie name "a=b" is not valid`},
		{"bad prefix", Config{Regions: map[string]RegionConfig{"a": {Prefix: "a b"}}}, `Prefix "a b" must match`},
		{"unknown scheme", Config{Regions: map[string]RegionConfig{"a": {Backend: "ftp://x"}}}, `unknown scheme "ftp"`},
		{"no scheme", Config{Regions: map[string]RegionConfig{"a": {Backend: "localhost"}}}, "missing scheme"},
		{"bad max_bytes", Config{Regions: map[string]RegionConfig{"a": {Backend: "memory://?max_bytes=lots"}}}, `max_bytes: bad size "lots"`},
		{"unknown memory option", Config{Regions: map[string]RegionConfig{"a": {Backend: "memory://?size=1"}}}, `unknown option "size"`},
		{"memory host", Config{Regions: map[string]RegionConfig{"a": {Backend: "memory://host"}}}, "takes no host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
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
	c, err := New(Config{Regions: map[string]RegionConfig{"a": {}, "b": {Backend: "memory://?max_bytes=1MiB"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, _ := c.Region("a")
	cfg := r.Config()
	if cfg.TTL != DefaultTTL || cfg.MaxEntryBytes != DefaultMaxEntryBytes || cfg.Prefix != DefaultPrefix ||
		cfg.Backend != "memory://" || len(cfg.Statuses) != 1 || cfg.Statuses[0] != 200 || cfg.FillTimeout != DefaultFillTimeout {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	rb, _ := c.Region("b")
	if mb := rb.be.(*memory.Backend); mb.MaxBytes() != 1<<20 {
		t.Fatalf("max_bytes = %d", mb.MaxBytes())
	}
	if got := c.Regions(); len(got) != 2 || got[0] != "a" {
		t.Fatalf("Regions() = %v", got)
	}
}

func TestConstructionErrors(t *testing.T) {
	c, err := New(Config{Regions: map[string]RegionConfig{"a": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Route("nope"); err == nil || !strings.Contains(err.Error(), `unknown region "nope"`) {
		t.Fatalf("unknown region: %v", err)
	}
	if _, err := c.Route("a", Tags("x:{")); err == nil {
		t.Fatal("bad tag template accepted")
	}
	if _, err := c.Route("a", Key("a"), Key("b")); err == nil {
		t.Fatal("two keys accepted")
	}
	// Options of invalidating routes are not options of cached ones (nor
	// the reverse): misuse does not compile.
	if _, ok := any(Regions("a")).(RouteOption); ok {
		t.Fatal("Regions is a RouteOption")
	}
	if _, ok := any(Key("a")).(InvalidateOption); ok {
		t.Fatal("Key is an InvalidateOption")
	}
	if _, err := c.Invalidator(); err == nil {
		t.Fatal("empty invalidator accepted")
	}
	if _, err := c.Invalidator(Regions("nope")); err == nil {
		t.Fatal("unknown region accepted by Invalidator")
	}
	if _, err := c.Invalidator(Keys("nope", "{path}")); err == nil {
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
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "MiB", "1TiB", "1.5MiB", "99999999999999999999"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}
