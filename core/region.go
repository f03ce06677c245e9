package core

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Region is a named cache policy with its backend. Get one from
// Cache.Region; routes reach it through Cache.Route.
type Region struct {
	c             *Cache
	name          string
	cfg           RegionConfig
	be            backend
	ns            string // Prefix + ":"
	regionCounter string
	// keyCounterPrefix and tagCounterPrefix start the logical names of key
	// and tag counters.
	keyCounterPrefix, tagCounterPrefix string
	// keyHead and keyHeadGET start every canonical key of the region: the
	// namespace, key format and region name, and for GET (and HEAD) the
	// method too, encoded once instead of on every request.
	keyHead, keyHeadGET []byte
	// prefixPrintable is set when the key and tag counter prefixes are
	// visible ASCII (the Prefix and region name are the user's).
	prefixPrintable bool
	status          map[int]bool
	varyHeaders     []string // canonical, sorted
	// keyedHeaders are the headers every key holds, all lines of each:
	// the forwarding headers, the client-address ones unless ignored,
	// and VaryHeaders.
	keyedHeaders []string
	// keyedIndex maps a keyed header to its position in keyedHeaders, and
	// keyedNone is the encoding of a request carrying none of them.
	keyedIndex   map[string]int
	keyedNone    []byte
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
	errLogged atomicTime
}

func newRegion(c *Cache, name string, cfg RegionConfig, be backend) *Region {
	r := &Region{
		c: c, name: name, cfg: cfg, be: be, ns: cfg.Prefix + ":",
		status:       map[int]bool{},
		varyHeader:   map[string]bool{},
		varyCookie:   map[string]bool{},
		ignoreCookie: map[string]bool{},
	}
	r.refreshSem = make(chan struct{}, cfg.MaxRefreshes)
	r.flights.memory = failureMemory
	r.regionCounter = r.counterName(r.ns + "v:r:" + name)
	r.keyCounterPrefix = r.ns + "v:k:" + name + ":"
	r.tagCounterPrefix = r.ns + "v:t:"
	r.prefixPrintable = allOf(r.keyCounterPrefix, classPrintable) && allOf(r.tagCounterPrefix, classPrintable)
	kb := keyBuilder{b: []byte(r.ns)}
	kb.field(keyFormat)
	kb.field(name)
	r.keyHead = kb.b
	kb = keyBuilder{b: slices.Clone(r.keyHead)}
	kb.field(http.MethodGet)
	r.keyHeadGET = kb.b
	for _, s := range cfg.Statuses {
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
	r.keyedHeaders = append(r.keyedHeaders, r.varyHeaders...)
	r.keyedIndex = make(map[string]int, len(r.keyedHeaders))
	for i, h := range r.keyedHeaders {
		r.keyedIndex[h] = i
		r.keyedNone = binary.AppendUvarint(r.keyedNone, 0)
	}
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
	s.Breaker = r.brk.String()
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
// under: itself in process, and for remote stores also itself when it is
// short and printable (readable in redis-cli), else a SHA-256 under the
// prefix, so Memcached's 250-byte, no-space rule always holds.
func (r *Region) counterName(s string) string {
	if !r.be.remote() {
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

// storageKey is where an entry lives: the canonical key itself in process,
// its SHA-256 where it leaves the process.
func (r *Region) storageKey(canonical string) string {
	if _, near := r.be.(*nearBackend); near {
		return canonical // hashed by the near cache only when it goes remote
	}
	if r.be.remote() {
		return entryKey(r.ns, canonical)
	}
	return canonical
}

// storageKeyIn is storageKey built in the request's scratch, without
// allocating: the result views st and is valid until st is pooled.
func (r *Region) storageKeyIn(st *reqState, canonical string) string {
	if _, near := r.be.(*nearBackend); near || !r.be.remote() {
		return canonical
	}
	if _, user := r.be.(*storeBackend); user {
		return r.storageKey(canonical) // a store of unknown code may keep its key
	}
	st.skey = appendEntryKey(st.skey[:0], r.ns, canonical)
	return unsafeString(st.skey)
}

// entryKey is where a remote backend keeps the entry of a canonical key:
// the namespace ("prefix:"), then the SHA-256 of the key in hex.
func entryKey(ns, canonical string) string { return string(appendEntryKey(nil, ns, canonical)) }

func appendEntryKey(dst []byte, ns, canonical string) []byte {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(canonical), len(canonical)))
	dst = append(dst, ns...)
	dst = append(dst, "e:"...)
	return hex.AppendEncode(dst, sum[:])
}

// leaseKey is where the fill lease of a canonical key lives.
func (r *Region) leaseKey(canonical string) string { return r.ns + "l:" + hashKey(canonical) }

// backendError counts and logs (at most once a second per region) a
// backend failure. The request it happened in runs uncached.
func (r *Region) backendError(op string, err error) {
	r.stats.errors.Add(1)
	if o := r.observer(); o != nil {
		o.BackendError(r.name, op, err)
	}
	if r.errLogged.every(time.Second) {
		r.c.log.Error("routecache: backend error", "region", r.name, "op", op, "err", err)
	}
}

// Option configures a cached route or an invalidating route.
type Option func(*options) error

type options struct {
	soft    bool
	key     string
	tags    []string
	regions []string
	keys    map[string][]string
}

// Tags declares the tags of a cached route's entries, or the tags a
// mutating route invalidates. Templates may use {param}, {query:name},
// {header:Name}, {method} and {path}.
func Tags(templates ...string) Option {
	return func(o *options) error {
		o.tags = append(o.tags, templates...)
		return nil
	}
}

// Key replaces the default key of a cached route by a template, for
// example "article:{id}"; routes with the same template in one region
// share entries. Region vary headers, cookies and the principal still
// apply, and the method is always part of the key.
func Key(template string) Option {
	return func(o *options) error {
		if o.key != "" {
			return errors.New("routecache: Key given twice")
		}
		o.key = template
		return nil
	}
}

// Soft makes a mutating route's tag and region invalidations soft (see
// Cache.InvalidateTagsSoft): entries are marked stale, not unusable, in
// regions with SoftInvalidation. Key invalidations stay hard.
func Soft() Option {
	return func(o *options) error {
		o.soft = true
		return nil
	}
}

// Regions names whole regions a mutating route invalidates.
func Regions(names ...string) Option {
	return func(o *options) error {
		o.regions = append(o.regions, names...)
		return nil
	}
}

// Keys names keys of a region that a mutating route invalidates: Key
// templates ("article:{id}") or, for routes on the default key, "{path}".
func Keys(region string, templates ...string) Option {
	return func(o *options) error {
		if o.keys == nil {
			o.keys = map[string][]string{}
		}
		o.keys[region] = append(o.keys[region], templates...)
		return nil
	}
}

func applyOptions(opts []Option) (*options, error) {
	o := &options{}
	for _, f := range opts {
		if f == nil {
			continue
		}
		if err := f(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func compileAll(list []string) ([]*template, error) {
	out := make([]*template, 0, len(list))
	for _, s := range list {
		t, err := parseTemplate(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Next runs the rest of the handler chain, writing to w. Adapters build it
// from their framework's "next"; it returns the handler's error (Echo) or
// a non-nil error when the framework reports the request as failed or
// aborted (Gin), which keeps the response out of the cache.
type Next func(w http.ResponseWriter, r *http.Request) error

// ErrSkipStore, returned by a Next, keeps a response out of the cache
// without reporting an error: Serve returns nil. Adapters use it for
// requests their framework marks as failed without an error value (Gin's
// c.Errors or an abort, an Echo handler that returned nil uncommitted).
var ErrSkipStore = errors.New("routecache: response not storable")

// Route is a compiled cache decorator: one region, a key and tags. It is
// safe for concurrent use and meant to be built once per route.
type Route struct {
	r    *Region
	key  *template // nil: the default key
	tags []*template
	// staticTags holds the counter names of tags without placeholders.
	staticTags []string
	// namesFromKey is set when the route's counter names are a function of
	// its canonical key (the default key, no {header:...} in a tag): an
	// entry this route stored under the request's key then depends on
	// exactly the counters the request named, and a hit compares values
	// only.
	namesFromKey bool
}

// Route builds the decorator for a route cached in the named region. An
// unknown region or a bad template is an error here, at construction.
func (c *Cache) Route(region string, opts ...Option) (*Route, error) {
	r, err := c.Region(region)
	if err != nil {
		return nil, err
	}
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(o.regions) > 0 || len(o.keys) > 0 || o.soft {
		return nil, errors.New("routecache: Regions, Keys and Soft are options of invalidating routes, not cached ones")
	}
	rt := &Route{r: r}
	if o.key != "" {
		if rt.key, err = parseTemplate(o.key); err != nil {
			return nil, err
		}
	}
	if rt.tags, err = compileAll(o.tags); err != nil {
		return nil, err
	}
	rt.staticTags = make([]string, len(rt.tags))
	rt.namesFromKey = rt.key == nil
	for i, t := range rt.tags {
		if t.static {
			rt.staticTags[i] = r.tagCounter(t.text)
		}
		for _, part := range t.parts {
			if part.kind == tplHeader {
				rt.namesFromKey = false
			}
		}
	}
	return rt, nil
}

// Region returns the route's region.
func (rt *Route) Region() *Region { return rt.r }

// reqState is the per-request scratch of a lookup, pooled so that a hit
// allocates nothing for its key and counter names. Strings viewing its
// buffers (unsafeString) are valid only until the state goes back to the
// pool: whatever outlives the request (an entry, a flight key, a counter
// snapshot) is cloned first.
type reqState struct {
	key   []byte
	skey  []byte // the storage key of a remote entry
	nbuf  []byte
	refs  []nameRef
	names []string
	vals  []uint64
}

// nameRef is a counter name: a static string, or nbuf[s:e]. printable
// is set when the built name is known to be visible ASCII (its fixed
// parts were checked once, its values are escaped), so that only its
// length decides whether a remote store keeps it as it is.
type nameRef struct {
	static    string
	s, e      int
	printable bool
}

var statePool = sync.Pool{New: func() any {
	return &reqState{key: make([]byte, 0, 256), nbuf: make([]byte, 0, 256)}
}}

func getState() *reqState {
	st := statePool.Get().(*reqState)
	st.key, st.skey, st.nbuf, st.refs, st.names, st.vals = st.key[:0], st.skey[:0], st.nbuf[:0], st.refs[:0], st.names[:0], st.vals[:0]
	return st
}

func putState(st *reqState) {
	clear(st.names) // drop views and strings before pooling
	if cap(st.key) > 64<<10 || cap(st.nbuf) > 64<<10 {
		return // do not pool huge buffers
	}
	statePool.Put(st)
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// build computes a request's canonical key (into st.key) and the names
// of the counters its entry depends on (st.names, st.vals sized to match):
// the region's, the key's, and each declared tag's. Every key part is
// length-prefixed, so no two different requests share a key. ok is false
// when a template names a missing route parameter.
func (rt *Route) build(st *reqState, req *http.Request, p Params, pattern string) bool {
	r := rt.r
	kb := keyBuilder{b: st.key}
	if m := req.Method; m == http.MethodGet || m == http.MethodHead {
		kb.b = append(kb.b, r.keyHeadGET...)
	} else {
		kb.b = append(kb.b, r.keyHead...)
		kb.field(m)
	}
	st.refs = append(st.refs, nameRef{static: r.regionCounter})
	ks := len(st.nbuf)
	st.nbuf = append(st.nbuf, r.keyCounterPrefix...)
	if rt.key != nil {
		vs := len(st.nbuf)
		var ok bool
		if st.nbuf, ok = rt.key.appendTo(st.nbuf, req, p); !ok {
			return false
		}
		kb.field("t")
		kb.field(unsafeString(st.nbuf[vs:]))
		if rt.key.exact {
			rt.key.appendExact(&kb, req)
		}
	} else {
		// The key counter names the path in its one escaped form, so that
		// InvalidateKey reaches every spelling of it; the key itself also
		// holds the raw path as sent (RawPath, set when it differs from
		// that form), which Echo's router and Gin's UseRawPath read.
		path := canonicalPath(req.URL)
		st.nbuf = append(st.nbuf, path...)
		kb.field("d")
		kb.field(req.Host)
		kb.field(pattern)
		kb.field(path)
		kb.field(req.URL.RawPath)
		// The query as sent: Echo's QueryString (and any handler reading
		// RawQuery) sees "?b=2&a=1" and "?a=1&b=2" apart. CanonicalQuery
		// opts in to sorting and re-encoding it, for handlers that read
		// only parsed values.
		if r.cfg.CanonicalQuery {
			kb.field(canonicalQuery(req.URL.RawQuery))
		} else {
			kb.field(req.URL.RawQuery)
		}
	}
	st.refs = append(st.refs, nameRef{s: ks, e: len(st.nbuf), printable: r.prefixPrintable && (rt.key == nil || rt.key.printable)})
	// Whether the connection was TLS: Echo's Scheme() reads it first.
	if req.TLS != nil {
		kb.field("tls")
	} else {
		kb.field("")
	}
	r.appendKeyedHeaders(&kb, req.Header)
	// Credentials enter the key as an HMAC of all their values, never in
	// clear: the key is stored in the entry, and the entry in the backend.
	for _, name := range r.varyCookies {
		kb.mac(r.c, cookieValues(req, name))
	}
	if r.cfg.VaryAuthorization {
		kb.mac(r.c, req.Header["Authorization"])
	}
	st.key = kb.b
	for i, t := range rt.tags {
		if t.static {
			st.refs = append(st.refs, nameRef{static: rt.staticTags[i]})
			continue
		}
		ts := len(st.nbuf)
		st.nbuf = append(st.nbuf, r.tagCounterPrefix...)
		var ok bool
		if st.nbuf, ok = t.appendTo(st.nbuf, req, p); !ok {
			return false
		}
		st.refs = append(st.refs, nameRef{s: ts, e: len(st.nbuf), printable: r.prefixPrintable && t.printable})
	}
	// Views are taken only now that nbuf has stopped growing.
	remote := r.be.remote()
	for _, ref := range st.refs {
		n := ref.static
		if n == "" {
			n = unsafeString(st.nbuf[ref.s:ref.e])
			if remote && !(ref.printable && len(n) <= maxPlainCounterName) {
				n = r.counterName(n)
			}
		}
		st.names = append(st.names, n)
	}
	st.vals = slices.Grow(st.vals, len(st.names))[:len(st.names)]
	return true
}

// appendKeyedHeaders appends every line of each keyed header, in the order
// of keyedHeaders (an absent header is an empty list). Whichever of the
// request's headers and the keyed ones are fewer is the one looked up.
func (r *Region) appendKeyedHeaders(kb *keyBuilder, h http.Header) {
	if len(h) == 0 {
		kb.b = append(kb.b, r.keyedNone...)
		return
	}
	if len(h) >= len(r.keyedHeaders) || len(r.keyedHeaders) > 64 {
		for _, name := range r.keyedHeaders {
			kb.values(h[name])
		}
		return
	}
	var present uint64
	for name := range h {
		if i, ok := r.keyedIndex[name]; ok {
			present |= 1 << i
		}
	}
	if present == 0 {
		kb.b = append(kb.b, r.keyedNone...)
		return
	}
	for i, name := range r.keyedHeaders {
		if present&(1<<i) != 0 {
			kb.values(h[name])
		} else {
			kb.b = append(kb.b, 0) // an empty list
		}
	}
}

// canonicalKey returns the canonical key text of a request and its key
// counter's logical name, as copies (for tests and tools).
func (rt *Route) canonicalKey(req *http.Request, p Params, pattern string) (canonical, keyName string, ok bool) {
	st := getState()
	defer putState(st)
	if !rt.build(st, req, p, pattern) {
		return "", "", false
	}
	kn := string(st.nbuf[st.refs[1].s:st.refs[1].e])
	return string(st.key), strings.TrimPrefix(kn, rt.r.keyCounterPrefix), true
}

func setBypass(w http.ResponseWriter, reason string) {
	h := w.Header()
	h["X-Cache"] = []string{"BYPASS"}
	h["Cache-Status"] = []string{"routecache; fwd=bypass; detail=" + reason}
}

func setMiss(rw *ResponseWriter) {
	h := rw.Header()
	h["X-Cache"] = []string{"MISS"}
	h["Cache-Status"] = []string{"routecache; fwd=uri-miss"}
}

// Serve runs the cache lifecycle for one request: look up, replay a hit,
// or run next (once per key in this process) and store its response when
// it is storable. pattern is the route pattern ("/articles/:id"); p gives
// the route's parameters. It returns next's error, if next ran.
func (rt *Route) Serve(w http.ResponseWriter, req *http.Request, p Params, pattern string, next Next) error {
	err := rt.serve(w, req, p, pattern, next)
	if errors.Is(err, ErrSkipStore) {
		return nil
	}
	return err
}

func (rt *Route) serve(w http.ResponseWriter, req *http.Request, p Params, pattern string, next Next) error {
	r := rt.r
	if r.c.closed.Load() {
		r.stats.addBypass(BypassClosed)
		setBypass(w, BypassClosed)
		return next(w, req)
	}
	if reason := r.requestBypass(req); reason != "" {
		r.stats.addBypass(reason)
		setBypass(w, reason)
		return next(w, req)
	}
	if !r.brk.allow() {
		r.stats.addBypass(BypassBreaker)
		setBypass(w, BypassBreaker)
		return next(w, req)
	}
	st := getState()
	defer putState(st)
	if !rt.build(st, req, p, pattern) {
		r.stats.addBypass(BypassKey)
		setBypass(w, BypassKey)
		return next(w, req)
	}
	canonical := unsafeString(st.key)
	names, vals := st.names, st.vals
	skey := r.storageKeyIn(st, canonical)
	ctx := req.Context()
	e, err := r.lookup(ctx, skey, names, vals)
	if err != nil {
		r.stats.addBypass(BypassBackend)
		setBypass(w, BypassBackend)
		return next(w, req)
	}
	now := nowNano()
	if e != nil && e.freshUntil-now < int64(clockGuard) {
		// Near or past expiry: decide on the real clock, not the coarse one.
		now = time.Now().UnixNano()
	}
	switch r.classify(ctx, rt, e, canonical, names, vals, now) {
	case fresh:
		r.stats.hits.Add(1)
		r.replay(w, req, e, now, "HIT")
		if r.cfg.EarlyRefresh > 0 && req.Method == http.MethodGet && xfetch(e, now, r.cfg.EarlyRefresh) {
			r.stats.earlyRefreshes.Add(1)
			rt.refresh(w, req, skey, canonical, names, vals, next)
		}
		return nil
	case staleOK:
		// Stale-while-revalidate: answer now, then refresh once.
		r.stats.stale.Add(1)
		r.replay(w, req, e, now, "STALE")
		if req.Method == http.MethodGet {
			rt.refresh(w, req, skey, canonical, names, vals, next)
		}
		return nil
	case errorOnly:
		// Past the stale window but within stale-if-error: the entry may
		// stand in for a failing handler, nothing more.
	default:
		e = nil
	}
	if req.Method == http.MethodHead {
		// A HEAD response has no body to store for GET; run it uncached.
		r.stats.addBypass(BypassHead)
		setBypass(w, BypassHead)
		return next(w, req)
	}
	f, leader := r.flights.join(skey, r.cfg.FillTimeout)
	if !leader {
		return rt.wait(w, req, f, e, names, vals, next)
	}
	// The fill outlives nothing of st, but its results do: copy them.
	return rt.fill(w, req, f, strings.Clone(skey), strings.Clone(canonical), names, vals, e, next)
}

// lookup loads an entry and the counters; a corrupt entry is a miss. A
// failure is counted, logged and reported to the breaker, unless the
// request itself was cancelled.
func (r *Region) lookup(ctx context.Context, skey string, names []string, vals []uint64) (*entry, error) {
	return r.read(ctx, skey, names, vals, true)
}

// recheck is lookup for a second read of a key in the same request (a
// fill's re-check, polls for another instance's fill): a corrupt value the
// first read counted is not counted again.
func (r *Region) recheck(ctx context.Context, skey string, names []string, vals []uint64) (*entry, error) {
	return r.read(ctx, skey, names, vals, false)
}

func (r *Region) read(ctx context.Context, skey string, names []string, vals []uint64, countCorrupt bool) (*entry, error) {
	o, t0 := r.obsStart()
	e, err := r.be.load(ctx, skey, names, vals)
	r.obsLatency(o, "get", t0)
	if errors.Is(err, errCorrupt) {
		if countCorrupt {
			r.stats.corrupt.Add(1)
		}
		r.brk.done(nil)
		return nil, nil
	}
	r.opDone(ctx, "get", err)
	return e, err
}

// opDone accounts for a backend operation's outcome.
func (r *Region) opDone(ctx context.Context, op string, err error) {
	if err != nil && ctx.Err() != nil {
		return // the caller went away: not the backend's fault
	}
	r.brk.done(err)
	if err != nil {
		r.backendError(op, err)
	}
}

// freshness is what an entry may be used for at a given time.
type freshness int

const (
	unusable  freshness = iota
	fresh               // serve it
	staleOK             // serve it and refresh (stale-while-revalidate)
	errorOnly           // serve it only if the handler fails (stale-if-error)
)

func (r *Region) classify(ctx context.Context, rt *Route, e *entry, canonical string, names []string, vals []uint64, now int64) freshness {
	if e == nil || e.key != canonical || now >= e.staleUntil && now >= e.freshUntil || r.invalidationPending() {
		return unusable // (a pending invalidation may concern any entry: invalqueue.go)
	}
	var f freshness
	switch {
	case now < e.freshUntil:
		f = fresh
	case now < e.freshUntil+int64(r.cfg.Stale):
		f = staleOK
	case now < e.freshUntil+int64(r.cfg.StaleIfError):
		f = errorOnly
	default:
		return unusable
	}
	if !r.valid(ctx, rt, e, names, vals) {
		if r.cfg.SoftInvalidation && r.softValid(ctx, e, names, vals) {
			if f == errorOnly {
				return errorOnly
			}
			return staleOK // softly invalidated: serve stale, refresh
		}
		return unusable
	}
	return f
}

// xfetch decides a probabilistic early refresh (Vattani, Chierichetti and
// Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB
// 2015): refresh when now - delta*beta*ln(rand) >= expiry, where delta is
// how long the last fill took. Hot keys refresh shortly before expiry,
// one request at a time, instead of all missing together.
func xfetch(e *entry, now int64, beta float64) bool {
	if e.fillNanos <= 0 {
		return false
	}
	gap := -float64(e.fillNanos) * beta * math.Log(1-rand.Float64())
	return float64(now)+gap >= float64(e.freshUntil)
}

// valid reports whether no counter an entry depends on changed since its
// handler started. rt is the route asking (nil for memoize).
func (r *Region) valid(ctx context.Context, rt *Route, e *entry, names []string, vals []uint64) bool {
	for _, v := range vals {
		if v == 0 {
			return false
		}
	}
	// Stored by this very route under this key (classify compared the key
	// text): its counters are the ones named here, in the same order.
	if rt != nil && e.producer == rt && rt.namesFromKey && len(e.counters) == len(vals) {
		for i, c := range e.counters {
			if c.value != vals[i] {
				return false
			}
		}
		return true
	}
	// Fast path: the entry was stored by this route, same counters in order.
	if len(e.counters) == len(names) {
		same := true
		for i, c := range e.counters {
			if c.name != names[i] {
				same = false
				break
			}
			if c.value != vals[i] {
				return false
			}
		}
		if same {
			return true
		}
	}
	// The entry depends on counters this route did not fetch (another route
	// sharing the key declared other tags): fetch them too.
	var extra []string
	for _, c := range e.counters {
		found := false
		for i, n := range names {
			if n == c.name {
				if vals[i] != c.value {
					return false
				}
				found = true
				break
			}
		}
		if !found {
			extra = append(extra, c.name)
		}
	}
	if len(extra) == 0 {
		return true
	}
	ev := make([]uint64, len(extra))
	if err := r.be.counters(ctx, extra, ev); err != nil {
		r.backendError("get-counters", err)
		return false
	}
	for i, name := range extra {
		for _, c := range e.counters {
			if c.name == name && c.value != ev[i] {
				return false
			}
		}
		if ev[i] == 0 {
			return false
		}
	}
	return true
}

// wait follows another request's fill of the same key. fallback, if
// set, is a stale-if-error entry this request may serve if the fill fails.
func (rt *Route) wait(w http.ResponseWriter, req *http.Request, f *flight, fallback *entry, names []string, vals []uint64, next Next) error {
	r := rt.r
	timer := time.NewTimer(r.cfg.FillTimeout)
	defer timer.Stop()
	timedOut := false
	select {
	case <-f.done:
	case <-req.Context().Done():
		// The caller gave up; let its handler see the cancelled context as
		// it would without a cache.
		return next(w, req)
	case <-timer.C:
		// The fill outlived FillTimeout (a handler ignoring its context):
		// stop waiting for it, as for a failed fill.
		timedOut = true
	}
	if timedOut || f.e == nil {
		if (timedOut || f.failed) && fallback != nil {
			r.stats.stale.Add(1)
			r.stats.staleIfError.Add(1)
			r.replay(w, req, fallback, time.Now().UnixNano(), "STALE")
			return nil
		}
		switch {
		case timedOut:
			// The fill is stuck past FillTimeout: calling the origin again
			// from every waiter would pile onto whatever it is stuck on.
			replayFailure(w, req, plainFailure(http.StatusGatewayTimeout, detailFillTimeout))
			return nil
		case f.failed && f.fail != nil:
			// The fill failed (5xx, FillTimeout, panic): its failure is
			// shared, as its entry would have been.
			replayFailure(w, req, f.fail)
			return nil
		}
		// The leader's response was not storable (a cookie, private, a
		// stream...) or failed in a way only the framework renders (an
		// error): it was not meant to be shared, so run the handler.
		setMiss(&ResponseWriter{w: w})
		return next(w, req)
	}
	// The leader checked its entry against the counters after storing it,
	// but an invalidation may have completed between that check and this
	// request's own lookup: the entry must also match what this request
	// read, or it predates an invalidation this request already saw.
	if !snapshotAgrees(f.e, names, vals) || r.invalidationPending() {
		setMiss(&ResponseWriter{w: w})
		return next(w, req)
	}
	r.stats.coalesced.Add(1)
	r.stats.hits.Add(1)
	r.replay(w, req, f.e, time.Now().UnixNano(), "HIT")
	return nil
}

// snapshotAgrees reports whether an entry's counter snapshot agrees with
// the values a waiting request read. A counter that request found missing
// (0) agrees with anything: had an invalidation completed before the
// request looked, it would have created the counter.
func snapshotAgrees(e *entry, names []string, vals []uint64) bool {
	for i, n := range names {
		if vals[i] == 0 {
			continue
		}
		for _, c := range e.counters {
			if c.name == n && c.value != vals[i] {
				return false
			}
		}
	}
	return true
}

// fill runs the handler for a key this request leads, streaming to the
// client while recording, and stores the response when it is storable.
// With a stale-if-error fallback the response is held back instead of
// streamed, so that a failure (5xx, error, panic) can be replaced by the
// stale entry; a response too large to hold starts streaming and loses
// that protection.
func (rt *Route) fill(w http.ResponseWriter, req *http.Request, f *flight, skey, canonical string, names []string, vals []uint64, fallback *entry, next Next) (err error) {
	r := rt.r
	var stored *entry
	var fail *failure
	failed := true
	defer func() { r.flights.landResult(skey, f, stored, failed, fail) }()

	if _, ok := r.be.(leaser); ok && r.cfg.LeaseTTL > 0 {
		// Across instances: one fills, the others wait for its entry. The
		// entry is read again once the lease is taken (another instance may
		// have stored it and released the lease since this request looked),
		// which also covers a fill of this process that just landed.
		e, release, out := r.lease(req.Context(), rt, skey, canonical, names, vals, nil)
		if release != nil {
			defer release()
		}
		switch out {
		case leaseFound, leaseAwaited:
			failed, stored = false, e
			if out == leaseAwaited {
				r.stats.coalesced.Add(1)
			}
			r.stats.hits.Add(1)
			r.replay(w, req, e, time.Now().UnixNano(), "HIT")
			return nil
		case leaseTimeout:
			r.stats.leaseTimeouts.Add(1)
		}
	} else if e, lerr := r.recheck(req.Context(), skey, names, vals); lerr == nil {
		// Re-check inside the flight: a fill that just landed may have stored it.
		now := time.Now().UnixNano()
		if r.classify(req.Context(), rt, e, canonical, names, vals, now) == fresh {
			failed = false
			stored = e
			r.stats.hits.Add(1)
			r.replay(w, req, e, now, "HIT")
			return nil
		}
	}
	// The counters this entry will carry are the ones read before the
	// handler runs: an invalidation during the handler makes it unusable.
	if err := r.be.ensure(req.Context(), names, vals); err != nil {
		r.opDone(req.Context(), "ensure-counters", err)
		failed = false
		r.stats.addBypass(BypassBackend)
		setBypass(w, BypassBackend)
		return next(w, req)
	}
	r.stats.misses.Add(1)
	if o := r.observer(); o != nil {
		o.Miss(r.name)
	}
	rw := &ResponseWriter{w: w, before: w.Header().Clone(), record: true, max: r.cfg.MaxEntryBytes, onCommit: setMiss}
	if fallback != nil {
		rw.hold, rw.hdr = true, w.Header().Clone()
	}
	fail = panicFailure // if produce re-raises a panic
	res := rt.produce(rw, req, skey, canonical, names, vals, next, fallback != nil)
	stored, failed, fail = res.handed, res.failed, res.fail
	if fallback != nil && rw.hold {
		if res.failed {
			r.stats.stale.Add(1)
			r.stats.staleIfError.Add(1)
			r.replay(w, req, fallback, time.Now().UnixNano(), "STALE")
			return nil
		}
		rw.release()
	}
	if res.panicked != nil {
		panic(res.panicked)
	}
	return res.err
}

// newEntry builds the entry of a response (or memoized value) whose
// producer started at start, with the counter snapshot read before it ran
// and the region's lifetimes.
func (r *Region) newEntry(status int, header http.Header, body []byte, canonical string, snap []counterSnap, start time.Time) *entry {
	e := &entry{
		status:    status,
		header:    header,
		body:      body,
		created:   start.UnixNano(),
		fillNanos: int64(time.Since(start)),
		key:       canonical,
		counters:  snap,
	}
	e.freshUntil = e.created + int64(r.cfg.TTL)
	e.staleUntil = e.freshUntil + int64(max(r.cfg.Stale, r.cfg.StaleIfError))
	return e
}

// storeEntry writes e for its kept lifetime and accounts for the outcome:
// a refusal is counted as a not-stored reason, a failure also as a backend
// error. It reports whether the entry was stored.
func (r *Region) storeEntry(ctx context.Context, skey string, e *entry) bool {
	o, t0 := r.obsStart()
	err := r.be.store(ctx, skey, e, r.cfg.TTL+max(r.cfg.Stale, r.cfg.StaleIfError))
	r.obsLatency(o, "set", t0)
	switch {
	case err == nil:
	case errors.Is(err, errTooLarge):
		r.stats.addNotStored(NotStoredTooLarge)
		return false
	case errors.Is(err, errDropped):
		r.stats.addNotStored(NotStoredDropped)
		return false
	default:
		r.opDone(ctx, "set", err)
		r.stats.addNotStored(NotStoredBackend)
		return false
	}
	r.stats.stores.Add(1)
	if o != nil {
		o.Store(r.name, len(e.body))
	}
	return true
}

// produced is the outcome of one handler run.
type produced struct {
	handed   *entry // stored and safe to hand to waiters
	failed   bool   // 5xx, error, panic or timeout
	err      error  // the handler's error, for the framework
	panicked any    // a recovered panic value, to re-raise
	fail     *failure
}

// panicFailure is what the waiters of a fill whose handler panicked
// answer: the panic itself goes on to the leader's framework.
var panicFailure = plainFailure(http.StatusInternalServerError, detailSharedFailure)

// produce runs next into rw on a context detached from the request's
// (with the region's FillTimeout), then stores the response if storable.
// A panic is recovered and returned when recoverPanic is set (a stale
// entry or a background refresh absorbs it), and re-raised otherwise.
func (rt *Route) produce(rw *ResponseWriter, req *http.Request, skey, canonical string, names []string, vals []uint64, next Next, recoverPanic bool) (res produced) {
	r := rt.r
	fillCtx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), r.cfg.FillTimeout)
	defer cancel()
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != nil {
				r.stats.addNotStored(NotStoredPanic)
				res.failed, res.panicked, res.fail = true, v, panicFailure
				if !recoverPanic {
					panic(v)
				}
				r.c.log.Error("routecache: handler panicked (stale entry served, or refresh dropped)", "region", r.name, "panic", v)
			}
		}()
		res.err = next(rw, req.WithContext(fillCtx))
	}()
	if res.panicked != nil {
		// Kept even when recovered: a fill whose response already started
		// streaming (too large to hold back) must re-raise it, or the
		// client would take a truncated body for a complete one.
		return res
	}
	skip := errors.Is(res.err, ErrSkipStore)
	if skip {
		res.err = nil
	}
	if res.err == nil && !skip {
		// A skipped response left uncommitted is the framework's to finish
		// (Gin renders c.Errors in an outer middleware): committing a 200
		// here would preempt it.
		rw.finish()
	}
	res.failed = res.err != nil || rw.status >= 500 || fillCtx.Err() != nil
	if rw.hold && rw.commit {
		// A held response goes out when released, with every header set
		// until then, not just those present at its first write.
		rw.snapshot = rw.hdr.Clone()
	}
	if res.failed {
		res.fail = sharedFailure(rw, fillCtx.Err() != nil)
	}
	sent := canonicalHeader(rw.snapshot)
	reason := ""
	switch {
	case res.err != nil, skip:
		reason = NotStoredError
	case rw.hijacked:
		reason = NotStoredHijacked
	case rw.flushed:
		reason = NotStoredFlushed
	case rw.over:
		reason = NotStoredTooLarge
	case fillCtx.Err() != nil:
		reason = NotStoredError
	case hasTrailers(rw.Header()): // the live map: trailers come after the body
		reason = NotStoredTrailer
	default:
		reason = r.responseReason(rw.status, sent)
	}
	if reason != "" {
		r.stats.addNotStored(reason)
		return res
	}
	snap := make([]counterSnap, len(names))
	for i, n := range names {
		snap[i] = counterSnap{name: strings.Clone(n), value: vals[i]}
	}
	e := r.newEntry(rw.status, storedHeader(canonicalHeader(rw.before), sent), rw.body, canonical, snap, start)
	e.producer = rt
	if e.etag = e.header.Get("Etag"); e.etag == "" {
		e.etag = strongETag(e.body)
		e.header["Etag"] = []string{e.etag}
	}
	if e.header.Get("Last-Modified") == "" {
		e.header["Last-Modified"] = []string{start.UTC().Format(http.TimeFormat)}
	}
	e.prepare()
	storeCtx, cancelStore := context.WithTimeout(context.WithoutCancel(req.Context()), r.cfg.FillTimeout)
	defer cancelStore()
	if !r.storeEntry(storeCtx, skey, e) {
		return res
	}
	// Hand the entry to waiters only if no invalidation landed meanwhile.
	now := make([]uint64, len(names))
	if cerr := r.be.counters(storeCtx, names, now); cerr == nil {
		for i := range now {
			if now[i] != vals[i] {
				return res
			}
		}
		res.handed = e
	}
	return res
}

// sharedFailure is the failure a failed fill's waiters may answer: the
// origin's own 5xx as it was sent (replayable headers, so never
// Set-Cookie; the recorded body), a plain response with its status when it
// could not be kept whole, a 504 for a fill past FillTimeout that sent no
// 5xx, and nil for a failure only the framework renders (an error with no
// 5xx committed): a status below 500 is never shared, since a response
// that was not storable may be personal.
func sharedFailure(rw *ResponseWriter, timedOut bool) *failure {
	switch {
	case rw.commit && rw.status >= 500:
		if rw.over || rw.flushed || rw.hijacked {
			return plainFailure(rw.status, detailSharedFailure)
		}
		sent := canonicalHeader(rw.snapshot)
		return &failure{status: rw.status, header: storedHeader(canonicalHeader(rw.before), sent), body: rw.body, detail: detailSharedFailure}
	case timedOut:
		return plainFailure(http.StatusGatewayTimeout, detailFillTimeout)
	}
	return nil
}

// refresh recomputes an entry after its (stale or early-expiring) copy
// was sent: the response is flushed first so the client is not kept
// waiting, then the handler runs, on this request's goroutine (Gin and
// Echo recycle their contexts once a request returns, so it cannot move
// to another) with a held-back writer and a detached context. At most one
// refresh per key runs in this process, and at most MaxRefreshes per
// region; a refresh that cannot start is skipped.
func (rt *Route) refresh(w http.ResponseWriter, req *http.Request, skey, canonical string, names []string, vals []uint64, next Next) {
	r := rt.r
	// Join first: a request finding the key already being filled or
	// refreshed has nothing to do, and must not count as skipped for
	// MaxRefreshes, which bounds refreshes of distinct keys.
	f, leader := r.flights.join(skey, r.cfg.FillTimeout)
	if !leader {
		return
	}
	skey, canonical = strings.Clone(skey), strings.Clone(canonical)
	var stored *entry
	var fail *failure
	failed := true
	defer func() { r.flights.landResult(skey, f, stored, failed, fail) }()
	select {
	case r.refreshSem <- struct{}{}:
		defer func() { <-r.refreshSem }()
	default:
		r.stats.refreshSkipped.Add(1)
		failed = false
		return
	}
	// One refresh across instances too: whoever holds the lease does it.
	if l, ok := r.be.(leaser); ok && r.cfg.LeaseTTL > 0 {
		lkey := r.leaseKey(canonical)
		token, got, lerr := l.acquire(req.Context(), lkey, r.cfg.LeaseTTL)
		if lerr != nil || !got {
			failed = false
			return
		}
		defer func() { _ = l.release(context.WithoutCancel(req.Context()), lkey, token) }()
	}
	_ = http.NewResponseController(w).Flush()
	sink := &sinkWriter{h: http.Header{}}
	rw := &ResponseWriter{w: sink, before: http.Header{}, record: true, max: r.cfg.MaxEntryBytes, hold: true, hdr: http.Header{}}
	r.stats.refreshes.Add(1)
	res := rt.produce(rw, req, skey, canonical, names, vals, next, true)
	stored, failed, fail = res.handed, res.failed, res.fail
	if res.err != nil {
		r.c.log.Warn("routecache: background refresh failed", "region", r.name, "err", res.err)
	}
}

// sinkWriter absorbs a background refresh's response.
type sinkWriter struct{ h http.Header }

func (s *sinkWriter) Header() http.Header         { return s.h }
func (s *sinkWriter) WriteHeader(int)             {}
func (s *sinkWriter) Write(b []byte) (int, error) { return len(b), nil }

// Invalidator is a compiled invalidating decorator for mutating routes.
type Invalidator struct {
	soft bool
	// remote is set when an invalidation reaches a shared backend: after
	// Close such a route refuses requests rather than change data it can
	// no longer invalidate.
	remote  bool
	c       *Cache
	tags    []*template
	regions []*Region
	keys    map[*Region][]*template
}

// Invalidator builds the decorator of a mutating route: after its handler
// answers 2xx, and before that answer reaches the client, it invalidates
// the given Tags, Regions and Keys. Unknown regions and bad templates are
// errors here.
func (c *Cache) Invalidator(opts ...Option) (*Invalidator, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.key != "" {
		return nil, errors.New("routecache: Key is an option of cached routes; use Keys to invalidate keys")
	}
	iv := &Invalidator{c: c, soft: o.soft, keys: map[*Region][]*template{}}
	if iv.tags, err = compileAll(o.tags); err != nil {
		return nil, err
	}
	for _, name := range o.regions {
		r, err := c.Region(name)
		if err != nil {
			return nil, err
		}
		iv.regions = append(iv.regions, r)
	}
	for name, tpls := range o.keys {
		r, err := c.Region(name)
		if err != nil {
			return nil, err
		}
		if iv.keys[r], err = compileAll(tpls); err != nil {
			return nil, err
		}
	}
	if len(iv.tags) == 0 && len(iv.regions) == 0 && len(iv.keys) == 0 {
		return nil, errors.New("routecache: Invalidator needs Tags, Regions or Keys")
	}
	for _, r := range c.regions {
		if r.be.remote() && (len(iv.tags) > 0 || slices.Contains(iv.regions, r) || iv.keys[r] != nil) {
			iv.remote = true
		}
	}
	return iv, nil
}

// Serve runs next and, when it answers 2xx, invalidates before the status
// line is sent.
//
// When an invalidation cannot be applied then (the backend refused it: it
// is queued and retried, see ErrInvalidationPending; or the Cache was
// closed meanwhile), the 2xx is not sent: the client gets 503 with
// Retry-After: 1 and X-Cache-Invalidation: pending, and the handler's
// body is discarded. A 2xx therefore always means the invalidation was
// applied; a 503 means the change may have been made but is not yet
// visible everywhere (retry the request: it is made again and
// invalidates again). A tag or key template naming a missing route
// parameter is logged and the response goes out unchanged.
//
// After Close, a route whose invalidations reach a shared backend (Redis,
// Memcached, a Store) answers 503 without running the handler; a
// memory-only one runs it uncached. Close waits for the requests already
// running (see Config.CloseTimeout).
func (iv *Invalidator) Serve(w http.ResponseWriter, req *http.Request, p Params, next Next) error {
	if !iv.c.inflight.enter() {
		if iv.remote {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "503 shutting down: this change could not be invalidated in the cache", http.StatusServiceUnavailable)
			return nil
		}
		return ignoreSkip(next(w, req))
	}
	defer iv.c.inflight.leave()
	gate := &pendingGate{w: w}
	rw := &ResponseWriter{w: gate, onCommit: func(rw *ResponseWriter) {
		if rw.status >= 200 && rw.status < 300 {
			if err := iv.fire(req, p); errors.Is(err, ErrInvalidationPending) || errors.Is(err, ErrClosed) {
				gate.refuse(rw)
			}
		}
	}}
	err := next(rw, req)
	if errors.Is(err, ErrSkipStore) {
		// The framework reports a failure (Gin's c.Errors, an abort): no
		// invalidation unless the handler already committed a 2xx, and an
		// uncommitted response is left for the framework to finish.
		return nil
	}
	if err == nil {
		rw.finish()
	}
	return err
}

func ignoreSkip(err error) error {
	if errors.Is(err, ErrSkipStore) {
		return nil
	}
	return err
}

// fire runs the invalidations; its error joins those the backend did not
// take (wrapping ErrInvalidationPending, or ErrClosed).
func (iv *Invalidator) fire(req *http.Request, p Params) error {
	ctx := context.WithoutCancel(req.Context())
	var errs []error
	if len(iv.tags) > 0 {
		tags := make([]string, 0, len(iv.tags))
		for _, t := range iv.tags {
			if tag, ok := t.expand(req, p); ok {
				tags = append(tags, tag)
			} else {
				errs = append(errs, fmt.Errorf("tag template %q: missing route parameter", t.raw))
			}
		}
		invalidate := iv.c.InvalidateTags
		if iv.soft {
			invalidate = iv.c.InvalidateTagsSoft
		}
		if err := invalidate(ctx, tags...); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range iv.regions {
		invalidate := iv.c.InvalidateRegion
		if iv.soft {
			invalidate = iv.c.InvalidateRegionSoft
		}
		if err := invalidate(ctx, r.name); err != nil {
			errs = append(errs, err)
		}
	}
	for r, tpls := range iv.keys {
		for _, t := range tpls {
			k, ok := t.expand(req, p)
			if !ok {
				errs = append(errs, fmt.Errorf("key template %q: missing route parameter", t.raw))
				continue
			}
			if err := iv.c.InvalidateKey(ctx, r.name, k); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		iv.c.log.Error("routecache: invalidation after "+req.Method+" "+req.URL.Path+" failed", "err", errors.Join(errs...))
	}
	return errors.Join(errs...)
}
