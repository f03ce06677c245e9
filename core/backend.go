package core

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/eko/gocache/lib/v4/store"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/gocache"
	"github.com/routecache/routecache/core/backend/memcache"
	"github.com/routecache/routecache/core/backend/memory"
	"github.com/routecache/routecache/core/backend/near"
	"github.com/routecache/routecache/core/backend/redis"
)

// Opening backends. core imports the built-in drivers, which register
// their schemes with the backend package's registry as a third party's
// driver would; a URL of any built-in scheme therefore works with no
// set-up, and New never has to tell a user to import a driver.

// The built-in drivers' defaults, as core has always exported them.
const (
	// DefaultMemoryBytes is the byte budget of "memory://" without max_bytes.
	DefaultMemoryBytes = memory.DefaultMaxBytes
	// DefaultRedisTimeout bounds each Redis operation (dial, read, write)
	// when the URL sets no timeout option.
	DefaultRedisTimeout = redis.DefaultTimeout
	// DefaultMemcacheTimeout bounds each Memcached operation when the URL
	// sets no timeout option.
	DefaultMemcacheTimeout = memcache.DefaultTimeout
	// DefaultMemcacheMaxIdle is the idle connections kept per Memcached
	// server when the URL sets no max_idle.
	DefaultMemcacheMaxIdle = memcache.DefaultMaxIdle
	// DefaultMemcacheMaxItem is the item size limit assumed when the URL
	// sets no max_item (memcached's default -I 1m).
	DefaultMemcacheMaxItem = memcache.DefaultMaxItem
	// DefaultNearStaleness is how long a near cache on Memcached trusts the
	// counter values it read, when the URL sets no near_staleness.
	DefaultNearStaleness = near.DefaultStaleness
	// DefaultCounterTTL is the lifetime of a counter on a backend opened
	// without a Cache (New sets each backend's from its regions).
	DefaultCounterTTL = backend.DefaultCounterTTL
)

// openBackend builds a backend from a region's Backend URL. The options
// near_max_bytes and near_staleness, valid on every remote scheme, put a
// near cache in front of it (see nearBackend).
func openBackend(raw string, opts backend.Options) (backend.Backend, error) {
	u, open, err := backend.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	if !q.Has("near_max_bytes") && !q.Has("near_staleness") {
		return open(u, opts)
	}
	if u.Scheme == "memory" {
		return nil, fmt.Errorf("backend %q: a memory backend needs no near cache", backend.DisplayURL(u))
	}
	inner := *u
	iq := u.Query()
	iq.Del("near_max_bytes")
	iq.Del("near_staleness")
	inner.RawQuery = iq.Encode()
	b, err := open(&inner, opts)
	if err != nil {
		return nil, err
	}
	nb, err := near.Wrap(b, u, q, opts)
	if err != nil {
		b.Close()
		return nil, err
	}
	return nb, nil
}

// openStore wraps an application's gocache store (RegionConfig.Store).
func openStore(st store.StoreInterface) backend.Backend { return gocache.New(st) }

// parseBytes reads sizes like "64MiB" (backend.ParseBytes).
func parseBytes(s string) (int64, error) { return backend.ParseBytes(s) }

// boundEntries tells be the body cap of a region using it (a no-op for
// backends that bound reads otherwise, or not at all).
func boundEntries(be backend.Backend, maxBody int64) {
	if b, ok := be.(backend.EntryBounder); ok {
		b.BoundEntries(maxBody)
	}
}

// counterSlack is added to the longest entry lifetime of a backend's
// regions to make its counters' lifetime: room for clock skew between
// instances and for the time between a counter's renewal and the store
// it comes with.
const counterSlack = time.Minute

// counterLifetime is how long a counter lives after it was created, bumped
// or renewed by the store of an entry depending on it: the longest time
// any of the regions' entries can be served (TTL plus the longer of Stale
// and StaleIfError), plus the FillTimeout during which a fill holds a
// snapshot before storing, plus counterSlack. An entry is stored with its
// counters renewed, so no counter expires while an entry recording it can
// still be served; a counter that expires anyway (evicted, or shortened by
// an instance with shorter lifetimes) is re-created from a fresh random
// value, and the entries recording the old one are misses.
func counterLifetime(r *Region, rt *Route) time.Duration {
	return r.longest(rt) + r.cfg.FillTimeout + counterSlack
}

// counterLives is how long each backend whose counters expire keeps them
// (counterLifetime): set for the regions by New, raised by a route whose
// own lifetime is longer (core.TTL, core.StaleFor).
type counterLives struct {
	mu sync.Mutex
	d  map[backend.Backend]time.Duration
}

// need makes r's backend keep counters at least as long as an entry of
// rt (nil: of the region) needs.
func (cl *counterLives) need(r *Region, rt *Route) {
	lifer, ok := r.be.(backend.CounterLifer)
	if !ok {
		return
	}
	d := counterLifetime(r, rt)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if d <= cl.d[r.be] {
		return
	}
	if cl.d == nil {
		cl.d = map[backend.Backend]time.Duration{}
	}
	cl.d[r.be] = d
	lifer.SetCounterTTL(d)
}

// schemeList names the registered schemes for error messages.
func schemeList() string { return strings.Join(backend.Schemes(), ", ") }

// strongETag derives a strong validator from the body: its 64-bit xxHash
// (XXH64, seed 0) and its length, in hex, quoted ("<hash>-<length>"). It
// depends on the body alone, so every replica derives the same one; two
// bodies of different lengths never share it, and two of the same length
// do with probability 2^-64. It is not a cryptographic digest: whoever
// controls a body can make another of their own collide with it, which
// only lets a client keep a copy of that same URL it already received
// (docs/http-semantics.md, Validators). Entries stored with the earlier
// SHA-256 form keep the ETag stored with them.
func strongETag(body []byte) string {
	var b [strongETagMax]byte
	return string(appendStrongETag(b[:0], body))
}

// strongETagMax is the longest strongETag: two quotes, 16 hex digits of
// the hash, a hyphen and up to 16 of the length.
const strongETagMax = 2 + 16 + 1 + 16

// appendStrongETag appends strongETag(body) to dst.
func appendStrongETag(dst, body []byte) []byte {
	var b [strongETagMax]byte
	b[0] = '"'
	h := xxhash.Sum64(body)
	for i := 1; i < 17; i += 2 { // a byte of the hash at a time, high first
		p := hexPairs[h>>56]
		b[i], b[i+1] = p[0], p[1]
		h <<= 8
	}
	b[17] = '-'
	n := 18
	l := uint64(len(body))
	var tmp [16]byte
	t := len(tmp)
	for {
		t--
		tmp[t] = hexPairs[l&15][1]
		l >>= 4
		if l == 0 {
			break
		}
	}
	n += copy(b[n:], tmp[t:])
	b[n] = '"'
	return append(dst, b[:n+1]...)
}

// hexPairs holds each byte's two lower-case hex digits.
var hexPairs = func() (t [256][2]byte) {
	const digits = "0123456789abcdef"
	for i := range t {
		t[i] = [2]byte{digits[i>>4], digits[i&15]}
	}
	return t
}()
