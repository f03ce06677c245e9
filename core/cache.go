package core

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/eko/gocache/lib/v4/store"
)

// Defaults applied to a zero RegionConfig field.
const (
	// DefaultTTL is how long an entry stays fresh when RegionConfig.TTL is 0.
	DefaultTTL = 5 * time.Minute
	// DefaultMaxEntryBytes caps a cached body when RegionConfig.MaxEntryBytes is 0.
	DefaultMaxEntryBytes = 1 << 20
	// DefaultFillTimeout bounds a coalesced fill when RegionConfig.FillTimeout is 0.
	DefaultFillTimeout = 30 * time.Second
	// DefaultLeaseTTL is RegionConfig.LeaseTTL's default.
	DefaultLeaseTTL = 5 * time.Second
	// DefaultLeaseWait is RegionConfig.LeaseWait's default.
	DefaultLeaseWait = 2 * time.Second
	// DefaultPrefix namespaces every key when RegionConfig.Prefix is "".
	DefaultPrefix = "rc"
	// DefaultMaxTags bounds the runtime tags of one entry when
	// RegionConfig.MaxTags is 0.
	DefaultMaxTags = 64
)

// Config describes a Cache: its named regions and where it logs.
type Config struct {
	// Regions maps a region name (letters, digits, '_', '-', '.') to its
	// policy. At least one region is required.
	Regions map[string]RegionConfig
	// Logger receives backend errors. Nil means slog.Default().
	Logger *slog.Logger
	// Breaker tunes the circuit breaker kept for each remote backend:
	// Redis, Memcached and a gocache Store (the embedded memory store has
	// none). The zero value opens after 5 consecutive failures for 1 s.
	Breaker BreakerConfig
	// Secret keys the HMAC that stands in for credential values in keys
	// (Authorization lines with VaryAuthorization, VaryCookies values), so
	// that no credential reaches a backend in clear, nor a hash that could
	// be brute-forced without it. Give every replica the same secret to
	// share such entries between them. Empty means a random secret per
	// Cache: such entries are then neither shared between processes nor
	// found again after a restart.
	Secret []byte
	// Observer, when non-nil, receives every cache event (hits, misses,
	// bypasses, stores, backend errors and latencies) as it happens; see
	// Observer. Cache.AddObserver adds more. Nil costs one nil check per
	// event.
	Observer Observer
	// CloseTimeout bounds how long Close waits for invalidating requests
	// still running and for pending invalidations (bumps the backend did
	// not take, retried with backoff) before it closes the backends and
	// reports what it could not apply. 0 means DefaultCloseTimeout (10 s).
	CloseTimeout time.Duration
}

// RegionConfig is the policy shared by every route cached in one region.
// The zero value of each field is a documented default.
type RegionConfig struct {
	// Backend is the store URL. "" means "memory://". Regions with the
	// same URL share one store (and one connection pool). The forms:
	//
	//	memory://                                 embedded store (lock-free reads, CLOCK eviction), 64 MiB budget
	//	memory://?max_bytes=16MiB                 the same with another budget
	//	redis://[user:pass@]host:port[/db]        Redis (?timeout=250ms, go-redis options such as pool_size)
	//	rediss://[user:pass@]host:port[/db]       the same over TLS
	//	redis+cluster://h1:7000,h2:7001           Redis Cluster (no /db); rediss+cluster:// over TLS
	//	memcache://h1:11211,h2:11211              Memcached (?timeout=100ms&max_idle=64&max_item=1MiB)
	//	redis://host:6379/0?near_max_bytes=16MiB  any redis…:// or memcache:// URL with a near
	//	                                          cache in process (near_staleness=1s on memcache://)
	//
	// docs/configuration.md ("Backend URLs") lists every option.
	Backend string
	// Store, when non-nil, is a gocache store used instead of Backend. It
	// must accept and return []byte (string is accepted back too).
	Store store.StoreInterface
	// TTL is how long an entry is fresh. 0 means DefaultTTL (5 minutes).
	TTL time.Duration
	// Stale is the stale-while-revalidate window after TTL: within it a
	// request is answered at once from the stale entry (X-Cache: STALE) and
	// the entry is refreshed in the background. 0 means none.
	Stale time.Duration
	// StaleIfError is the stale-if-error window after TTL (RFC 5861):
	// within it, when the handler fails (5xx, error, panic, FillTimeout),
	// the stale entry is served instead and the failure is not stored.
	// 0 means none. Entries are kept for TTL + max(Stale, StaleIfError).
	StaleIfError time.Duration
	// EarlyRefresh is XFetch's beta: with it > 0, a fresh hit may trigger
	// a refresh shortly before expiry, with a probability growing as expiry
	// nears and with how long the handler takes (1 is the usual value;
	// larger refreshes earlier). 0 means off.
	EarlyRefresh float64
	// SoftInvalidation lets InvalidateTagsSoft and InvalidateRegionSoft
	// mark this region's entries stale (served at once as STALE while one
	// request refreshes them) instead of unusable. It costs nothing on a
	// hit; a lookup whose counters changed reads the soft marks, one more
	// round trip on Redis or Memcached. False means soft invalidations are
	// hard ones here.
	SoftInvalidation bool
	// MaxRefreshes bounds the background refreshes (stale-while-revalidate
	// and early refresh) running at once in the region. 0 means 4.
	MaxRefreshes int
	// Prefix namespaces every key the region writes, so a shared Redis or
	// Memcached can hold other data. "" means DefaultPrefix ("rc").
	Prefix string
	// MaxEntryBytes caps a cached body; a larger response streams through
	// uncached. 0 means DefaultMaxEntryBytes (1 MiB). Negative is an error.
	MaxEntryBytes int64
	// Statuses lists the response statuses that may be stored.
	// Nil means only 200.
	Statuses []int
	// StatusTTL stores responses with the listed statuses, each fresh for
	// its own TTL in place of the route's or region's: negative caching,
	// for example {404: 30 * time.Second}. It adds to Statuses. Statuses
	// that answer a range or conditional request (206, 304, 412, 416) are
	// refused, as in Statuses; TTLs must be positive. Nil means none.
	StatusTTL map[int]time.Duration
	// UseCacheControl lets the handler's Cache-Control set its entry's
	// lifetime: s-maxage, else max-age, its freshness; stale-while-
	// revalidate and stale-if-error its stale windows; must-revalidate
	// turns both windows off; max-age=0 (or s-maxage=0) means not stored.
	// Each is capped by the route's or region's own value, which stays
	// the ceiling. private, no-store and no-cache refuse storage whether
	// it is set or not. False (the default) ignores those directives.
	UseCacheControl bool
	// CDNHeaders adds, for a CDN in front, Surrogate-Key (the entry's tags,
	// space-separated) and CDN-Cache-Control (RFC 9213: its TTL and stale
	// windows) to every response the region stores, and so to its hits,
	// unless the handler set them. The CDN caches what routecache caches;
	// purging it by the same tags is the application's part. False (the
	// default) adds neither.
	CDNHeaders bool
	// VaryHeaders are request headers whose values are part of the key.
	// A response with "Vary" naming a header not listed here is not stored
	// (Accept-Encoding aside: see Compress). Accept-Encoding listed here is
	// keyed normalised, never as sent: on the one coding among gzip, br
	// and zstd the request accepts first, or identity.
	VaryHeaders []string
	// Compress stores responses gzipped: an identity response with a
	// compressible Content-Type (text, JSON, XML, JavaScript, SVG...) and
	// a body of at least 256 bytes is stored gzip-compressed once (when
	// that is smaller), replayed as stored to clients that accept gzip
	// and decoded for those that do not. Every response of the region's
	// routes then carries Vary: Accept-Encoding, and a gzip copy's strong
	// ETag gets a "-gzip" suffix. MaxEntryBytes still bounds the body as
	// the handler writes it. False (the default) stores bodies as written.
	Compress bool
	// VaryCookies are cookies whose values are part of the key. A request
	// carrying any other cookie (not in IgnoreCookies) bypasses the cache.
	VaryCookies []string
	// IgnoreCookies are cookies that neither bypass nor key (for example
	// analytics cookies the handler never reads).
	IgnoreCookies []string
	// VaryAuthorization keys on an HMAC of every Authorization line
	// (under Config.Secret) instead of bypassing requests that carry one.
	// Each principal gets its own entries; the credential never reaches
	// the backend.
	VaryAuthorization bool
	// CanonicalQuery keys the default key on the query string sorted by
	// parameter name and re-encoded, so that "?b=2&a=1" and "?a=1&b=2"
	// (or "?q=a+b" and "?q=a%20b") share an entry. False (the default) keys
	// on the query exactly as sent, because Echo's QueryString() and
	// handlers reading URL.RawQuery see those apart. Set it when the
	// region's handlers read only parsed values (c.Query, c.QueryParam,
	// URL.Query()). A query Go does not parse is keyed as sent either way.
	CanonicalQuery bool
	// IgnoreClientIPHeaders drops the client-address headers
	// (X-Forwarded-For, X-Real-Ip, Cf-Connecting-Ip, Fly-Client-Ip,
	// True-Client-Ip, X-Appengine-Remote-Addr) from the key. False (the
	// default) keys on them, because Gin's ClientIP and Echo's RealIP read
	// them and a handler echoing the client's address must not share it.
	// Set it when the region's handlers never read the client's address
	// and a proxy in front adds X-Forwarded-For: otherwise every client
	// gets entries of its own.
	IgnoreClientIPHeaders bool
	// LeaseTTL is how long one instance may hold the right to fill a key on
	// a shared (Redis or Memcached) backend while the others wait for its
	// entry; a holder that dies frees the key when the lease expires.
	// 0 means DefaultLeaseTTL (5 s); negative disables leases.
	LeaseTTL time.Duration
	// LeaseWait bounds how long an instance waits for another's fill
	// before running the handler itself. 0 means DefaultLeaseWait (2 s).
	LeaseWait time.Duration
	// FillTimeout bounds the handler run that fills a key for coalesced
	// waiters; the fill runs on a context detached from the first caller's.
	// 0 means DefaultFillTimeout (30 s).
	FillTimeout time.Duration
	// TagHeaders are response headers whose values are tags of the entry
	// (runtime tags, as with AddTags), split on spaces and commas: for
	// example "Surrogate-Key" or "Cache-Tag". The cache reads them from
	// the headers the handler sends and removes them, so they never reach
	// the client and are not stored. Nil means none.
	TagHeaders []string
	// MaxTags bounds the runtime tags (AddTags and TagHeaders) of one
	// entry: a response with more is not stored (never truncated), and
	// counted as not stored "too-many-tags". 0 means DefaultMaxTags (64).
	// Negative is an error.
	MaxTags int
}

// Cache is the registry of regions. It is safe for concurrent use; create
// one per process with New and Close it on shutdown.
type Cache struct {
	regions  map[string]*Region
	backends []backend.Backend
	breakers map[backend.Backend]*breaker
	hooks    hooks
	log      *slog.Logger
	// macs pools HMAC-SHA-256 states keyed by Config.Secret (or a random
	// secret): credentials enter keys through them (keyBuilder.mac).
	macs   sync.Pool
	closed atomic.Bool
	obs    observerSlot // see observer.go
	bg     background   // background fills and refreshes (memoize), awaited by Close (flight.go)
	lives  counterLives // how long each backend keeps counters (backend.go)

	// Invalidation lifecycle (invalqueue.go): a queue of pending bumps per
	// backend, the invalidating requests Close waits for, and invMu, held
	// (read) by every invalidation call and (write) by Close while it
	// gives up on the queues and closes the backends; shut is set then.
	queues       map[backend.Backend]*bumpQueue
	inflight     drainGroup
	invMu        sync.RWMutex
	shut         bool
	closeTimeout time.Duration
}

var regionName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// New validates cfg and opens the regions' backends.
func New(cfg Config) (*Cache, error) {
	if len(cfg.Regions) == 0 {
		return nil, errors.New("routecache: config has no regions")
	}
	if cfg.CloseTimeout < 0 {
		return nil, fmt.Errorf("routecache: CloseTimeout %v is negative", cfg.CloseTimeout)
	}
	c := &Cache{regions: make(map[string]*Region, len(cfg.Regions)), log: cfg.Logger,
		queues: map[backend.Backend]*bumpQueue{}, closeTimeout: cfg.CloseTimeout}
	if c.closeTimeout == 0 {
		c.closeTimeout = DefaultCloseTimeout
	}
	secret := slices.Clone(cfg.Secret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret) // never fails (crypto/rand)
	}
	c.macs.New = func() any { return hmac.New(sha256.New, secret) }
	if c.log == nil {
		c.log = slog.Default()
	}
	if cfg.Observer != nil {
		c.obs.add(cfg.Observer)
	}
	// A near cache reports the invalidations other instances made; they
	// become events once every region is known.
	var ready atomic.Bool
	opts := backend.Options{Logger: c.log, OnRemote: func(ev backend.Event) {
		if ready.Load() {
			c.remoteEvent(ev)
		}
	}}
	byURL := map[string]backend.Backend{}
	byStore := map[store.StoreInterface]backend.Backend{}
	names := make([]string, 0, len(cfg.Regions))
	for name := range cfg.Regions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rc := cfg.Regions[name]
		if !regionName.MatchString(name) {
			c.closeBackends()
			return nil, fmt.Errorf("routecache: region %q: name must match %s", name, regionName)
		}
		if err := normalize(&rc); err != nil {
			c.closeBackends()
			return nil, fmt.Errorf("routecache: region %q: %w", name, err)
		}
		var be backend.Backend
		switch {
		case rc.Store != nil:
			if be = byStore[rc.Store]; be == nil {
				be = openStore(rc.Store)
				byStore[rc.Store] = be
				c.backends = append(c.backends, be)
			}
		default:
			if be = byURL[rc.Backend]; be == nil {
				b, err := openBackend(rc.Backend, opts)
				if err != nil {
					c.closeBackends()
					return nil, fmt.Errorf("routecache: region %q: %w", name, err)
				}
				be = b
				byURL[rc.Backend] = be
				c.backends = append(c.backends, be)
			}
		}
		boundEntries(be, rc.MaxEntryBytes)
		r := newRegion(c, name, rc, be)
		if c.queues[be] == nil {
			c.queues[be] = newBumpQueue(c, be)
		}
		r.q = c.queues[be]
		if be.Remote() {
			if c.breakers == nil {
				c.breakers = map[backend.Backend]*breaker{}
			}
			if c.breakers[be] == nil {
				c.breakers[be] = newBreaker(cfg.Breaker)
			}
			r.brk = c.breakers[be]
		}
		c.regions[name] = r
	}
	for _, name := range names {
		c.lives.need(c.regions[name], nil)
	}
	startClock()
	ready.Store(true)
	c.prepareConnections()
	return c, nil
}

// prepareConnections hands each backend that prepares (backend.Preparer)
// the region counters of its regions, grouped by prefix, and lets them
// prepare at once: a burst right after New finds connections ready
// instead of dialling them under its operations' timeouts. Each bounds
// its own preparation and fails open.
func (c *Cache) prepareConnections() {
	var wg sync.WaitGroup
	for _, be := range c.backends {
		p, ok := be.(backend.Preparer)
		if !ok {
			continue
		}
		var groups []backend.RegionCounters
		byPrefix := map[string]int{}
		for _, name := range c.Regions() {
			r := c.regions[name]
			if r.be != be {
				continue
			}
			i, ok := byPrefix[r.cfg.Prefix]
			if !ok {
				i = len(groups)
				byPrefix[r.cfg.Prefix] = i
				groups = append(groups, backend.RegionCounters{Prefix: r.cfg.Prefix})
			}
			groups[i].Counters = append(groups[i].Counters, r.regionCounter)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Prepare(groups)
		}()
	}
	wg.Wait()
}

// normalize applies defaults and validates a region's config in place.
func normalize(rc *RegionConfig) error {
	switch {
	case rc.TTL < 0:
		return fmt.Errorf("TTL %v is negative", rc.TTL)
	case rc.Stale < 0:
		return fmt.Errorf("Stale %v is negative", rc.Stale)
	case rc.MaxEntryBytes < 0:
		return fmt.Errorf("MaxEntryBytes %d is negative", rc.MaxEntryBytes)
	case rc.FillTimeout < 0:
		return fmt.Errorf("FillTimeout %v is negative", rc.FillTimeout)
	case rc.StaleIfError < 0:
		return fmt.Errorf("StaleIfError %v is negative", rc.StaleIfError)
	case rc.EarlyRefresh < 0 || rc.EarlyRefresh != rc.EarlyRefresh:
		return fmt.Errorf("EarlyRefresh %v must be a number >= 0", rc.EarlyRefresh)
	case rc.MaxRefreshes < 0:
		return fmt.Errorf("MaxRefreshes %d is negative", rc.MaxRefreshes)
	case rc.MaxTags < 0:
		return fmt.Errorf("MaxTags %d is negative", rc.MaxTags)
	}
	if rc.MaxTags == 0 {
		rc.MaxTags = DefaultMaxTags
	}
	if rc.LeaseWait < 0 {
		return fmt.Errorf("LeaseWait %v is negative", rc.LeaseWait)
	}
	if rc.LeaseTTL == 0 {
		rc.LeaseTTL = DefaultLeaseTTL
	}
	if rc.LeaseWait == 0 {
		rc.LeaseWait = DefaultLeaseWait
	}
	if rc.MaxRefreshes == 0 {
		rc.MaxRefreshes = 4
	}
	if rc.TTL == 0 {
		rc.TTL = DefaultTTL
	}
	if rc.MaxEntryBytes == 0 {
		rc.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if rc.FillTimeout == 0 {
		rc.FillTimeout = DefaultFillTimeout
	}
	if rc.Prefix == "" {
		rc.Prefix = DefaultPrefix
	}
	if !regionName.MatchString(rc.Prefix) {
		//lint:ignore ST1005 Prefix is the field's name, as in the other messages of normalize
		return fmt.Errorf("Prefix %q must match %s", rc.Prefix, regionName)
	}
	if rc.Backend == "" && rc.Store == nil {
		rc.Backend = "memory://"
	}
	if len(rc.Statuses) == 0 {
		rc.Statuses = []int{http.StatusOK}
	}
	for _, s := range rc.Statuses {
		if err := cacheableStatus(s); err != nil {
			return err
		}
	}
	rc.StatusTTL = maps.Clone(rc.StatusTTL) // the caller's map may change later
	for s, d := range rc.StatusTTL {
		if err := cacheableStatus(s); err != nil {
			return fmt.Errorf("StatusTTL: %w", err)
		}
		if d <= 0 {
			return fmt.Errorf("StatusTTL: status %d: TTL %v must be positive", s, d)
		}
	}
	for _, h := range rc.VaryHeaders {
		if h == "" || !validToken(h) {
			return fmt.Errorf("VaryHeaders: %q is not a header name", h)
		}
		if credentialHeaders[http.CanonicalHeaderKey(h)] {
			return fmt.Errorf("VaryHeaders: %q holds credentials, which never enter a key in clear: use VaryAuthorization or VaryCookies", h)
		}
	}
	for _, h := range rc.TagHeaders {
		if h == "" || !validToken(h) {
			return fmt.Errorf("TagHeaders: %q is not a header name", h)
		}
	}
	for _, list := range [][]string{rc.VaryCookies, rc.IgnoreCookies} {
		for _, ck := range list {
			if ck == "" || !validToken(ck) {
				return fmt.Errorf("cookie name %q is not valid", ck)
			}
		}
	}
	return nil
}

// cacheableStatus reports why a status may not be stored, or nil.
func cacheableStatus(s int) error {
	if s < 200 || s > 599 {
		return fmt.Errorf("status %d cannot be cached", s)
	}
	if requestDependentStatus[s] {
		return fmt.Errorf("status %d cannot be cached: it answers a range or conditional request, so it depends on request headers the key does not hold", s)
	}
	return nil
}

// requestDependentStatus are the statuses whose answer depends on a
// request's Range or precondition headers: stored, one would be replayed to
// a plain request.
var requestDependentStatus = map[int]bool{
	http.StatusPartialContent:               true, // 206
	http.StatusNotModified:                  true, // 304
	http.StatusPreconditionFailed:           true, // 412
	http.StatusRequestedRangeNotSatisfiable: true, // 416
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == ';' || c == '=' || c == ',' {
			return false
		}
	}
	return true
}

// Region returns the named region, or an error naming it when it does not exist.
func (c *Cache) Region(name string) (*Region, error) {
	r, ok := c.regions[name]
	if !ok {
		return nil, fmt.Errorf("routecache: unknown region %q", name)
	}
	return r, nil
}

// Regions returns the region names, sorted.
func (c *Cache) Regions() []string {
	out := make([]string, 0, len(c.regions))
	for n := range c.regions {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Stats returns a snapshot of every region's counters, by region name.
func (c *Cache) Stats() map[string]Stats {
	out := make(map[string]Stats, len(c.regions))
	for n, r := range c.regions {
		out[n] = r.Stats()
	}
	return out
}

// Close shuts the Cache down. New requests run their handlers uncached,
// and new requests on invalidating routes whose invalidations reach a
// shared backend are refused (503) without running their handler. Close
// then waits, for at most Config.CloseTimeout (DefaultCloseTimeout,
// 10 s), for the invalidating requests still running to answer (their
// invalidations are applied or queued) and for every pending invalidation
// to be applied, retrying with backoff; then for memoized values being
// computed in the background (see Load), each for at most its region's
// FillTimeout; then it closes the backends. Invalidations it could not
// apply are counted in Stats.InvalidationsLost, logged, and reported in
// the returned error, as are invalidating requests still running.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var errs []error
	deadline := time.Now().Add(c.closeTimeout)
	if n := c.inflight.closeAndWait(deadline); n > 0 {
		errs = append(errs, fmt.Errorf("%d invalidating requests still running after %v: their invalidations cannot be applied", n, c.closeTimeout))
	}
	queues := c.queueList()
	for _, q := range queues {
		q.drain(deadline)
	}
	// Background memoized fills end first (memoize.go), each bounded by its
	// region's FillTimeout; a function ignoring its context is not waited
	// for past the longest FillTimeout plus a second.
	var bound time.Duration
	for _, r := range c.regions {
		bound = max(bound, r.cfg.FillTimeout)
	}
	c.bg.closeAndWait(bound + time.Second)
	// No invalidation call runs from here on; later ones see shut.
	c.invMu.Lock()
	defer c.invMu.Unlock()
	var lost []string
	for _, q := range queues {
		lost = append(lost, q.abandon()...)
	}
	if len(lost) > 0 {
		c.log.Error("routecache: invalidations lost at close: the backend did not take them within CloseTimeout; entries they should have invalidated may be served by other instances until their TTL",
			"count", len(lost), "counters", lost, "close_timeout", c.closeTimeout)
		errs = append(errs, fmt.Errorf("%d invalidations could not be applied (counters %s)", len(lost), strings.Join(lost, ", ")))
	}
	stopClock()
	c.shut = true
	if err := c.closeBackends(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("routecache: close: %w", errors.Join(errs...))
	}
	return nil
}

// queueList returns the bump queues in a stable order.
func (c *Cache) queueList() []*bumpQueue {
	var out []*bumpQueue
	for _, be := range c.backends {
		if q := c.queues[be]; q != nil {
			out = append(out, q)
		}
	}
	return out
}

// lostAfterClose accounts for an invalidation made after Close.
func (c *Cache) lostAfterClose(what string, regions ...*Region) error {
	for _, r := range regions {
		if r.be.Remote() {
			r.q.lost.Add(1)
		}
	}
	c.log.Error("routecache: invalidation after Close not applied", "what", what)
	return fmt.Errorf("routecache: %s: %w", what, ErrClosed)
}

func (c *Cache) closeBackends() error {
	var errs []error
	for _, b := range c.backends {
		if err := b.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.backends = nil
	return errors.Join(errs...)
}
