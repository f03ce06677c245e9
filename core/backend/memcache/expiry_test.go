package memcache

import (
	"testing"
	"time"
)

func TestMemcacheExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		ttl  time.Duration
		want time.Duration
	}{
		{0, 0},
		{-time.Second, 0},
		// Rounded up to whole seconds, plus the second memcached's clock may cut.
		{time.Nanosecond, 2 * time.Second},
		{500 * time.Millisecond, 2 * time.Second},
		{time.Second, 2 * time.Second},
		{1500 * time.Millisecond, 3 * time.Second},
		{10 * time.Minute, 10*time.Minute + time.Second},
		{30*24*time.Hour - time.Second, 30 * 24 * time.Hour}, // the longest relative time
		// Past 30 days: absolute unix times.
		{30 * 24 * time.Hour, time.Duration(1_800_000_000+30*24*3600+1) * time.Second},
		{31 * 24 * time.Hour, time.Duration(1_800_000_000+31*24*3600+1) * time.Second},
		{100 * 365 * 24 * time.Hour, time.Duration(1<<31-1) * time.Second}, // capped (int32)
		{time.Duration(1<<63 - 1), time.Duration(1<<31-1) * time.Second},   // no overflow
	}
	for _, c := range cases {
		got := memcacheExpiry(c.ttl, now)
		if got != c.want {
			t.Errorf("memcacheExpiry(%v) = %v, want %v", c.ttl, got, c.want)
		}
		// What gocache's store will send must be the whole seconds we meant.
		if int32(got.Seconds()) != int32(c.want/time.Second) {
			t.Errorf("%v: gocache would send %d", c.ttl, int32(got.Seconds()))
		}
	}
}
