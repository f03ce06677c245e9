package core

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Internals exposed to the black-box tests (package core_test), the
// standard library's export_test.go pattern: a behavioural test that must
// inject a fault into a region's backend, or find the exact key an entry
// or counter lives under, asks here. Everything else is tested through the
// public API.

// FailureMemory is how long a key's failed contended fill is shared with
// the callers that follow it (flight.go).
const FailureMemory = failureMemory

// RegionBackend returns the backend the named region of c stores in.
func RegionBackend(c *Cache, region string) backend.Backend { return c.regions[region].be }

// RegionPrefix returns the named region's key prefix (its Prefix, or the
// default New chose).
func RegionPrefix(c *Cache, region string) string { return c.regions[region].cfg.Prefix }

// RegionNamespace returns the named region's key namespace (Prefix + ":").
func RegionNamespace(c *Cache, region string) string { return c.regions[region].ns }

// TagCounter returns the backend name of a tag's version counter.
func TagCounter(c *Cache, region, tag string) string { return c.regions[region].tagCounter(tag) }

// KeyCounter returns the backend name of a key's version counter.
func KeyCounter(c *Cache, region, key string) string { return c.regions[region].keyCounter(key) }

// StorageKey returns the backend key the entry of a request to rt is
// stored under ("" if the request has no key).
func StorageKey(rt *Route, req *http.Request, p params, pattern string) string {
	canonical, _, ok := rt.canonicalKey(req, p, pattern)
	if !ok {
		return ""
	}
	return rt.r.storageKey(canonical)
}

// CanonicalKey returns the canonical key text of a request to rt and its
// key counter's logical name.
func CanonicalKey(rt *Route, req *http.Request, p params, pattern string) (canonical, keyName string, ok bool) {
	return rt.canonicalKey(req, p, pattern)
}

// KeyedForwardHeaders and ClientIPHeaders are the forwarding headers every
// default key includes.
var (
	KeyedForwardHeaders = keyedForwardHeaders
	ClientIPHeaders     = clientIPHeaders
)

// CounterNames returns the backend names of the version counters a
// request to rt reads (the region's first, then the key's, then its tags'),
// as copies; ok is false if the request has no key.
func CounterNames(rt *Route, req *http.Request, p params, pattern string) (names []string, ok bool) {
	st := getState()
	defer putState(st)
	if !rt.build(st, req, p, pattern) {
		return nil, false
	}
	for _, n := range st.names {
		names = append(names, strings.Clone(n))
	}
	return names, true
}

// LeaseKey returns the backend key of the fill lease of a request to rt.
func LeaseKey(rt *Route, req *http.Request, p params, pattern string) string {
	canonical, _, _ := rt.canonicalKey(req, p, pattern)
	return rt.r.leaseKey(canonical)
}

// OpenBackend opens a backend URL as New does.
func OpenBackend(raw string, opts backend.Options) (backend.Backend, error) {
	return openBackend(raw, opts)
}

// StrongETag is the ETag the engine gives a stored body.
func StrongETag(body []byte) string { return strongETag(body) }

// Closing reports whether Close has started on c.
func Closing(c *Cache) bool { return c.closed.Load() }

// BackendClients returns how many backend clients c opened.
func BackendClients(c *Cache) int { return len(c.backends) }

// IsSoft reports whether iv invalidates softly (marks stale).
func IsSoft(iv *Invalidator) bool { return iv.soft }

// MemoWaiters returns how many callers wait on the in-process fill of a
// memoized key (-1: no fill runs).
func MemoWaiters(c *Cache, region, key string) int {
	r := c.regions[region]
	skey := r.storageKey(r.memoKey(key))
	r.flights.mu.Lock()
	defer r.flights.mu.Unlock()
	if f, ok := r.flights.m[skey]; ok {
		return f.waiters
	}
	return -1
}

// Freshness is what a stored entry may be used for now (EntryFreshness).
type Freshness = freshness

// The freshness classes of a stored entry.
const (
	Unusable  = unusable
	Fresh     = fresh
	StaleOK   = staleOK
	ErrorOnly = errorOnly
)

// EntryFreshness classifies what the stored entry of a GET of target to
// rt (no route parameters; route pattern pattern) is good for now, without
// running a request (so without counting or refreshing anything). ok is
// false if the request has no key.
func EntryFreshness(rt *Route, target, pattern string) (f Freshness, ok bool, err error) {
	req := httptest.NewRequest("GET", target, nil)
	st := getState()
	defer putState(st)
	if !rt.build(st, req, noParams, pattern) {
		return unusable, false, nil
	}
	canonical := unsafeString(st.key)
	c := &call{r: rt.r, rt: rt, route: &routeFront{}, ctx: context.Background(), canonical: canonical,
		skey: rt.r.storageKey(canonical), names: st.names, vals: st.vals}
	e, err := c.lookup()
	if err != nil {
		return unusable, true, err
	}
	return c.classify(e, time.Now().UnixNano()), true, nil
}

// RouteCache returns the Cache rt belongs to.
func RouteCache(rt *Route) *Cache { return rt.r.c }
