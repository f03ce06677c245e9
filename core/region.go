package core

import (
	"encoding/binary"
	"net/http"
	"slices"
	"sort"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/memory"
	"github.com/routecache/routecache/core/backend/near"
	"github.com/routecache/routecache/core/internal/throttle"
)

// Region is a named cache policy with its backend. Get one from
// Cache.Region; routes reach it through Cache.Route.
type Region struct {
	c    *Cache
	name string
	cfg  RegionConfig
	be   backend.Backend
	// mem is be when it is the memory store: a hit on it reads the entry
	// first and its counters by the entry's names (Route.serve).
	mem *memory.Backend
	// near is be when it is a near cache: a hit on it asks the L1 for an
	// entry whose counters are known unchanged (Route.serveKeyed).
	near          *near.Cache
	keys          backend.KeyForm // how keys and counter names are shaped for be
	ns            string          // Prefix + ":"
	regionCounter string
	// epochCounter is the namespace's tag epoch, bumped by every tag
	// invalidation before its tag counters (runtimetags.go).
	epochCounter string
	// tagHeaders are the canonical names of RegionConfig.TagHeaders.
	tagHeaders []string
	// keyCounterPrefix and tagCounterPrefix start the logical names of key
	// and tag counters.
	keyCounterPrefix, tagCounterPrefix string
	// keyHead starts every canonical key of the region: the namespace, key
	// format and region name. keyHeadGETt and keyHeadGETd are it with the
	// method of GET (and HEAD) and the key's kind ("t": a key template,
	// "d": the default key) after it, encoded once instead of on every
	// request.
	keyHead, keyHeadGETt, keyHeadGETd []byte
	// templateKind is the kind of a Key template's keys: "th" when they
	// hold Request.Host (VaryHeaders lists Host), else "t".
	templateKind string
	// prefixPrintable is set when the key and tag counter prefixes are
	// visible ASCII (the Prefix and region name are the user's).
	prefixPrintable bool
	status          map[int]bool
	varyHeaders     []string // canonical, sorted
	// keyCoding is set when VaryHeaders lists Accept-Encoding: keys hold
	// the request's normalised coding, never the header as sent.
	keyCoding bool
	// keyedHeaders are the headers every key holds, all lines of each:
	// the forwarding headers, the client-address ones unless ignored,
	// and VaryHeaders.
	keyedHeaders []string
	// keyedIndex maps a keyed header to its position in keyedHeaders, and
	// keyedNone is the encoding of a request carrying none of them.
	keyedIndex map[string]int
	keyedNone  []byte
	// keyTailPlain ends the key of a request without TLS and keyed
	// headers on a route keying no credential, KeyFunc or content coding
	// (Route.plainTail): Route.appendTail's bytes for it, encoded once.
	keyTailPlain []byte
	varyHeader   map[string]bool
	varyCookies  []string // sorted
	varyCookie   map[string]bool
	ignoreCookie map[string]bool
	stats        regionStats
	flights      flightGroup
	brk          *breaker      // nil for the memory backend
	q            *bumpQueue    // the backend's pending invalidations (invalqueue.go)
	refreshSem   chan struct{} // bounds background refreshes
	// errLogged rate-limits error logs: one per second per region.
	errLogged throttle.Gate
}

func newRegion(c *Cache, name string, cfg RegionConfig, be backend.Backend) *Region {
	r := &Region{
		c: c, name: name, cfg: cfg, be: be, keys: backend.FormOf(be), ns: cfg.Prefix + ":",
		status:       map[int]bool{},
		varyHeader:   map[string]bool{},
		varyCookie:   map[string]bool{},
		ignoreCookie: map[string]bool{},
	}
	r.mem, _ = be.(*memory.Backend)
	r.near, _ = be.(*near.Cache)
	r.refreshSem = make(chan struct{}, cfg.MaxRefreshes)
	r.flights.memory = failureMemory
	r.regionCounter = r.counterName(r.ns + "v:r:" + name)
	r.epochCounter = r.counterName(r.ns + "v:e")
	for _, h := range cfg.TagHeaders {
		if h = http.CanonicalHeaderKey(h); !slices.Contains(r.tagHeaders, h) {
			r.tagHeaders = append(r.tagHeaders, h)
		}
	}
	r.keyCounterPrefix = r.ns + "v:k:" + name + ":"
	r.tagCounterPrefix = r.ns + "v:t:"
	r.prefixPrintable = allOf(r.keyCounterPrefix, classPrintable) && allOf(r.tagCounterPrefix, classPrintable)
	kb := keyBuilder{b: []byte(r.ns)}
	kb.field(keyFormat)
	kb.field(name)
	r.keyHead = kb.b
	kb = keyBuilder{b: slices.Clone(r.keyHead)}
	kb.field(http.MethodGet)
	get := kb.b
	// Go's server moves the Host header to Request.Host: a region that
	// lists it in VaryHeaders has its template keys hold Request.Host,
	// under a kind of their own ("th"), so that no key of one layout
	// equals one of the other (the default key holds the host anyway).
	r.templateKind = "t"
	for _, h := range cfg.VaryHeaders {
		if http.CanonicalHeaderKey(h) == "Host" {
			r.templateKind = "th"
		}
	}
	kb = keyBuilder{b: slices.Clone(get)}
	kb.field(r.templateKind)
	r.keyHeadGETt = kb.b
	kb = keyBuilder{b: slices.Clone(get)}
	kb.field("d")
	r.keyHeadGETd = kb.b
	for _, s := range cfg.Statuses {
		r.status[s] = true
	}
	for s := range cfg.StatusTTL {
		r.status[s] = true
	}
	for _, h := range cfg.VaryHeaders {
		h = http.CanonicalHeaderKey(h)
		if !r.varyHeader[h] {
			r.varyHeader[h] = true
			r.varyHeaders = append(r.varyHeaders, h)
		}
	}
	sort.Strings(r.varyHeaders)
	r.keyedHeaders = append(r.keyedHeaders, keyedForwardHeaders...)
	if !cfg.IgnoreClientIPHeaders {
		r.keyedHeaders = append(r.keyedHeaders, clientIPHeaders...)
	}
	for _, h := range r.varyHeaders {
		if h == headerAE {
			r.keyCoding = true
			continue
		}
		r.keyedHeaders = append(r.keyedHeaders, h)
	}
	r.keyedIndex = make(map[string]int, len(r.keyedHeaders))
	for i, h := range r.keyedHeaders {
		r.keyedIndex[h] = i
		r.keyedNone = binary.AppendUvarint(r.keyedNone, 0)
	}
	kb = keyBuilder{}
	kb.field("") // no TLS
	kb.b = append(kb.b, r.keyedNone...)
	kb.field("") // no content coding
	r.keyTailPlain = kb.b
	for _, ck := range cfg.VaryCookies {
		if !r.varyCookie[ck] {
			r.varyCookie[ck] = true
			r.varyCookies = append(r.varyCookies, ck)
		}
	}
	sort.Strings(r.varyCookies)
	for _, ck := range cfg.IgnoreCookies {
		r.ignoreCookie[ck] = true
	}
	return r
}

// Name returns the region's name.
func (r *Region) Name() string { return r.name }

// Config returns the region's configuration with defaults applied.
func (r *Region) Config() RegionConfig { return r.cfg }

// Stats returns a snapshot of the region's counters.
func (r *Region) Stats() Stats {
	s := r.stats.snapshot()
	s.Breaker = r.brk.State()
	if r.brk != nil {
		s.BreakerOpens = r.brk.opened.Load()
	}
	if r.q != nil {
		s.InvalidationsPending = uint64(max(r.q.pending.Load(), 0))
		s.InvalidationsLost = r.q.lost.Load()
		s.InvalidationRetries = r.q.retries.Load()
	}
	return s
}

// counterName turns a counter's logical name into the key it is stored
// under: itself for KeysPlain, and otherwise also itself when it is short
// and printable (readable in redis-cli), else a SHA-256 under the prefix,
// so Memcached's 250-byte, no-space rule always holds.
func (r *Region) counterName(s string) string {
	if r.keys == backend.KeysPlain {
		return s
	}
	if len(s) <= maxPlainCounterName && allOf(s, classPrintable) {
		return s
	}
	return r.ns + "v:h:" + hashKey(s)
}

// maxPlainCounterName is the longest counter name a remote store keeps
// as it is; longer ones are hashed.
const maxPlainCounterName = 200

func (r *Region) keyCounter(key string) string {
	return r.counterName(r.keyCounterPrefix + key)
}

func (r *Region) tagCounter(tag string) string {
	return r.counterName(r.tagCounterPrefix + tag)
}

// storageKey is where an entry lives: the canonical key itself, or its
// SHA-256 (backend.EntryKey) for a backend taking KeysHashed.
func (r *Region) storageKey(canonical string) string {
	if r.keys == backend.KeysHashed {
		return backend.EntryKey(r.ns, canonical)
	}
	return canonical
}

// storageKeyIn is storageKey built in the request's scratch, without
// allocating: the result views st and is valid until st is pooled (a
// backend copies what it keeps: see backend.Backend).
func (r *Region) storageKeyIn(st *reqState, canonical string) string {
	if r.keys != backend.KeysHashed {
		return canonical
	}
	st.skey = backend.AppendEntryKey(st.skey[:0], r.ns, canonical)
	return unsafeString(st.skey)
}

// leaseKey is where the fill lease of a canonical key lives.
func (r *Region) leaseKey(canonical string) string { return r.ns + "l:" + hashKey(canonical) }
