package core

import (
	"net/http"
	"testing"
	"time"
)

// The lifetime a response gets: route over region, StatusTTL over both,
// and the handler's Cache-Control, with UseCacheControl, only shortening.
func TestResponseLifetime(t *testing.T) {
	const h = time.Hour
	r := &Region{cfg: RegionConfig{TTL: h, Stale: 10 * time.Minute, StaleIfError: 20 * time.Minute,
		StatusTTL: map[int]time.Duration{404: 30 * time.Second}, UseCacheControl: true}}
	route := &Route{ttl: 5 * time.Minute, stale: time.Minute, staleIfError: -1}
	cases := []struct {
		name   string
		rt     *Route
		status int
		cc     string
		want   lifetime
		stored bool
	}{
		{"region", nil, 200, "", lifetime{h, 10 * time.Minute, 20 * time.Minute}, true},
		{"route", route, 200, "", lifetime{5 * time.Minute, time.Minute, 20 * time.Minute}, true},
		{"status over route", route, 404, "", lifetime{30 * time.Second, time.Minute, 20 * time.Minute}, true},
		{"max-age shortens", nil, 200, "max-age=60", lifetime{time.Minute, 10 * time.Minute, 20 * time.Minute}, true},
		{"max-age capped", nil, 200, "max-age=999999", lifetime{h, 10 * time.Minute, 20 * time.Minute}, true},
		{"s-maxage over max-age", nil, 200, "max-age=60, s-maxage=120", lifetime{2 * time.Minute, 10 * time.Minute, 20 * time.Minute}, true},
		{"windows", nil, 200, "max-age=60, stale-while-revalidate=30, stale-if-error=90", lifetime{time.Minute, 30 * time.Second, 90 * time.Second}, true},
		{"windows capped", nil, 200, "stale-while-revalidate=99999, stale-if-error=99999", lifetime{h, 10 * time.Minute, 20 * time.Minute}, true},
		{"must-revalidate", nil, 200, "max-age=60, must-revalidate, stale-if-error=90", lifetime{time.Minute, 0, 0}, true},
		{"max-age=0", nil, 200, "max-age=0", lifetime{}, false},
		{"s-maxage=0", nil, 200, "s-maxage=0, max-age=60", lifetime{}, false},
		{"malformed max-age is stale", nil, 200, "max-age=soon", lifetime{}, false},
		{"repeated max-age is stale", nil, 200, "max-age=60, max-age=120", lifetime{}, false},
		{"quoted", nil, 200, `max-age="60"`, lifetime{time.Minute, 10 * time.Minute, 20 * time.Minute}, true},
		{"case", nil, 200, "Max-Age=60", lifetime{time.Minute, 10 * time.Minute, 20 * time.Minute}, true},
	}
	for _, tc := range cases {
		hdr := http.Header{}
		if tc.cc != "" {
			hdr["Cache-Control"] = []string{tc.cc}
		}
		got, ok := r.responseLifetime(tc.rt, tc.status, hdr)
		if ok != tc.stored || ok && got != tc.want {
			t.Errorf("%s: got %+v stored=%v, want %+v stored=%v", tc.name, got, ok, tc.want, tc.stored)
		}
	}
	// Without UseCacheControl the directives are ignored.
	r.cfg.UseCacheControl = false
	if got, ok := r.responseLifetime(nil, 200, http.Header{"Cache-Control": {"max-age=0"}}); !ok || got.ttl != h {
		t.Errorf("UseCacheControl off: got %+v stored=%v, want the region's TTL", got, ok)
	}
}

// FuzzParseCacheControl: any header value parses, to durations that are
// absent (-1) or within [0, maxDirective].
func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"", "max-age=60", "s-maxage=0, max-age=1", `max-age="5"`, "stale-while-revalidate=99999999999999999999",
		"must-revalidate", "max-age=-1", "max-age=1,max-age=2", ",,=,", "MAX-AGE = 7", "stale-if-error=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cc := parseCacheControl([]string{v})
		for _, d := range []time.Duration{cc.maxAge, cc.sMaxAge, cc.swr, cc.sie} {
			if d != -1 && (d < 0 || d > maxDirective) {
				t.Fatalf("%q: duration %v out of range", v, d)
			}
		}
	})
}
