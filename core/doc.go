// Package core is routecache's engine: named cache regions, keys, tags and
// version-counter invalidation for HTTP responses (and memoized values),
// on plain net/http types. The Gin and Echo packages (ginadapter,
// echoadapter) only translate their frameworks to what this package needs,
// with package core/adapter.
//
// # Regions
//
// A Cache holds named regions, each a shared policy: a backend (embedded
// memory by default, or Redis, Redis Cluster, Memcached, any gocache store),
// a TTL, stale windows, a key prefix, size and status limits, and the
// request headers and cookies its keys vary on. Build one with New (or
// settings.New of package core/settings, from Pyramid-style settings) and
// Close it on shutdown:
//
//	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
//		"articles": {Backend: "redis://127.0.0.1:6379/0", TTL: 10 * time.Minute, Stale: time.Minute},
//		"short":    {TTL: 30 * time.Second},
//	}})
//
// Every zero field of RegionConfig is a documented default; a bad field,
// an unknown region named by a route or a bad template is an error when the
// route is built, never at request time.
//
// # The life of a cached request
//
// A cached route (Cache.Middleware, ginadapter.Cache, echoadapter.Cache,
// or adapter.ServeRoute of package core/adapter for other frameworks)
// runs these steps:
//
//  1. Bypass checks: only GET and HEAD without a body, without
//     Authorization or unknown cookies (unless the region varies on them),
//     without method-override headers. A bypass runs the handler with
//     X-Cache: BYPASS and a Cache-Status naming the reason.
//  2. The canonical key: method (HEAD reads as GET), host, route pattern,
//     escaped path, canonicalised query, forwarding headers and the region's
//     vary values, each part length-prefixed so no two requests share a
//     key; or a Key template. Built in pooled memory: a hit allocates
//     nothing of its own.
//  3. One lookup of the entry and of every counter it depends on (region,
//     key, each declared tag): one pipeline of bounded GETRANGEs on Redis, one GetMulti on Memcached,
//     none with a near cache hit.
//  4. Classification: an entry is usable only if its canonical key matches
//     and every counter still holds the value it had before the entry's
//     handler ran. Fresh entries are replayed (status, every header value,
//     body, plus Age, X-Cache, Cache-Status, ETag; 304 for a matching
//     If-None-Match or If-Modified-Since). Within Stale they are replayed as
//     STALE and refreshed after the response is sent; within StaleIfError
//     they stand by in case the handler fails.
//  5. A miss joins the key's in-process flight: one request fills, the
//     others wait for its entry, or share its failure (a 5xx, a
//     FillTimeout, a panic; never a non-storable success, which may be
//     personal), which the key then keeps for a second. On Redis and
//     Memcached a lease makes one instance fill while the others poll the
//     store for its entry and for the lease's release.
//  6. The fill runs the handler on a context detached from the caller's
//     (bounded by FillTimeout) through a recorder that streams to the
//     client while keeping a bounded copy, then stores the response if it is
//     storable (status allowed, no Set-Cookie, no private/no-store/no-cache,
//     no unkeyed Vary, not flushed, hijacked, failed or over the size cap).
//
// Backend failures never fail a request: the handler runs uncached, the
// error is counted (Stats) and logged (log/slog), and a circuit breaker per
// backend stops calling a dead one until a probe succeeds.
//
// # Invalidation
//
// Each region, key and tag has a counter in the region's backend.
// Invalidating (Cache.InvalidateTags, InvalidateKey, InvalidateRegion, the
// Invalidator behind ginadapter.Invalidate and friends, PurgeHandler)
// increments it: O(1) whatever the number of entries, and an entry computed
// before the increment is never served after it, even if it was stored
// after it. InvalidateTagsSoft marks entries stale instead. OnInvalidate
// observes invalidations, including other instances' through a Redis near
// cache's pub/sub.
//
// # Memoization and observability
//
// Load and Memoize cache any function's result in a region under a key and
// tags, with the same counters, coalescing, stale rules and backends as
// routes. Cache.Stats returns per-region counters; Config.Observer receives
// per-event calls; package prom exports both to Prometheus.
//
// See README.md and docs/ in the repository for the full guide.
package core
