package core

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// lifetime is how long an entry is fresh, then served stale while one
// request refreshes it (stale-while-revalidate), then kept to stand in for
// a failing handler (stale-if-error, counted from the end of freshness).
type lifetime struct {
	ttl, stale, staleIfError time.Duration
}

// kept is how long a backend keeps an entry with this lifetime.
func (l lifetime) kept() time.Duration { return l.ttl + max(l.stale, l.staleIfError) }

// apply sets e's expiry times from its creation time.
func (l lifetime) apply(e *backend.Entry) {
	e.FreshUntil = e.Created + int64(l.ttl)
	e.SWRUntil = e.FreshUntil + int64(l.stale)
	e.StaleUntil = e.FreshUntil + int64(max(l.stale, l.staleIfError))
}

// regionLifetime is the region's own lifetime.
func (r *Region) regionLifetime() lifetime {
	return lifetime{ttl: r.cfg.TTL, stale: r.cfg.Stale, staleIfError: r.cfg.StaleIfError}
}

// routeLifetime is the lifetime of rt's entries before the response is
// known: the region's, with the route's own TTL, Stale and StaleIfError
// (core.TTL, core.StaleFor) in their place. rt is nil for a memoized value.
func (r *Region) routeLifetime(rt *Route) lifetime {
	l := r.regionLifetime()
	if rt == nil {
		return l
	}
	if rt.ttl > 0 {
		l.ttl = rt.ttl
	}
	if rt.stale >= 0 {
		l.stale = rt.stale
	}
	if rt.staleIfError >= 0 {
		l.staleIfError = rt.staleIfError
	}
	return l
}

// responseLifetime is the lifetime of a storable response: the route's,
// with the region's StatusTTL for its status in place of the TTL, then,
// in a region with UseCacheControl, shortened by the handler's
// Cache-Control (never lengthened: the route's or region's values are
// ceilings). ok is false when the handler allows no freshness at all
// (max-age=0 or s-maxage=0): such a response is not stored. h must be
// canonical.
func (r *Region) responseLifetime(rt *Route, status int, h http.Header) (l lifetime, ok bool) {
	l = r.routeLifetime(rt)
	if d, found := r.cfg.StatusTTL[status]; found {
		l.ttl = d
	}
	if !r.cfg.UseCacheControl {
		return l, true
	}
	cc := parseCacheControl(h["Cache-Control"])
	switch {
	case cc.sMaxAge >= 0:
		l.ttl = min(l.ttl, cc.sMaxAge)
	case cc.maxAge >= 0:
		l.ttl = min(l.ttl, cc.maxAge)
	}
	if l.ttl <= 0 {
		return l, false
	}
	if cc.mustRevalidate {
		// RFC 9111 §5.2.2.2: never served stale, not even on error.
		l.stale, l.staleIfError = 0, 0
		return l, true
	}
	if cc.swr >= 0 {
		l.stale = min(l.stale, cc.swr)
	}
	if cc.sie >= 0 {
		l.staleIfError = min(l.staleIfError, cc.sie)
	}
	return l, true
}

// longest is the longest time an entry of rt (nil: of the region) can be
// kept, whatever its status: what its counters must outlive.
func (r *Region) longest(rt *Route) time.Duration {
	l := r.routeLifetime(rt)
	for _, d := range r.cfg.StatusTTL {
		l.ttl = max(l.ttl, d)
	}
	return l.kept()
}

// cacheControl holds the directives of a response's Cache-Control that
// set an entry's lifetime; -1 is an absent duration.
type cacheControl struct {
	maxAge, sMaxAge, swr, sie time.Duration
	mustRevalidate            bool
}

// parseCacheControl reads the lifetime directives of Cache-Control
// lines. A directive given twice, or with a value that is not a
// non-negative integer, counts as absent, except that a malformed max-age
// or s-maxage counts as 0 (RFC 9111 §4.2.1: treat it as stale).
func parseCacheControl(lines []string) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1}
	seen := map[string]int{}
	for _, line := range lines {
		for _, d := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(val), `"`)
			seen[name]++
			switch name {
			case "max-age":
				cc.maxAge = directiveSeconds(val, 0)
			case "s-maxage":
				cc.sMaxAge = directiveSeconds(val, 0)
			case "stale-while-revalidate":
				cc.swr = directiveSeconds(val, -1)
			case "stale-if-error":
				cc.sie = directiveSeconds(val, -1)
			case "must-revalidate", "proxy-revalidate":
				cc.mustRevalidate = true
			}
		}
	}
	if seen["max-age"] > 1 {
		cc.maxAge = 0
	}
	if seen["s-maxage"] > 1 {
		cc.sMaxAge = 0
	}
	if seen["stale-while-revalidate"] > 1 {
		cc.swr = -1
	}
	if seen["stale-if-error"] > 1 {
		cc.sie = -1
	}
	return cc
}

// directiveSeconds parses a delta-seconds value, returning bad when it is
// not a non-negative decimal integer. Values past a year are a year.
func directiveSeconds(v string, bad time.Duration) time.Duration {
	if v == "" || len(v) > 12 {
		if v != "" && strings.Trim(v, "0123456789") == "" {
			return maxDirective
		}
		return bad
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return bad
	}
	return min(time.Duration(n)*time.Second, maxDirective)
}

// maxDirective bounds a Cache-Control duration (RFC 9111 §1.2.2 allows
// any; a year is longer than any region's TTL).
const maxDirective = 365 * 24 * time.Hour
