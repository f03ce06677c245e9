package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Codec turns memoized values into the bytes stored in a region and back.
// Marshal must return a slice the cache may keep; Unmarshal receives a
// pointer to a value of the function's result type and must neither keep
// nor modify data: it is the cached entry's own body, shared by every hit.
type Codec interface {
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

type bytesCodec struct{}

func (bytesCodec) Marshal(v any) ([]byte, error) {
	switch t := v.(type) {
	case []byte:
		return bytes.Clone(t), nil
	case string:
		return []byte(t), nil
	}
	return nil, fmt.Errorf("routecache: BytesCodec encodes []byte and string, not %T", v)
}

func (bytesCodec) Unmarshal(data []byte, v any) error {
	switch p := v.(type) {
	case *[]byte:
		*p = bytes.Clone(data)
		return nil
	case *string:
		*p = string(data)
		return nil
	}
	return fmt.Errorf("routecache: BytesCodec decodes into *[]byte and *string, not %T", v)
}

var (
	// JSONCodec encodes values with encoding/json: exported fields only,
	// and what the function returned comes back as JSON decodes it (a
	// time.Time loses its monotonic clock, an interface field becomes a
	// map). It is the default.
	JSONCodec Codec = jsonCodec{}
	// BytesCodec stores a []byte or string result as is, with no encoding
	// cost. Memoize rejects it for other result types.
	BytesCodec Codec = bytesCodec{}
)

// LoadOption configures Load and Memoize.
type LoadOption func(*loadOptions) error

type loadOptions struct {
	tags  []string
	tagFn func(key string) []string
	codec Codec
}

// WithTags tags the memoized value: Cache.InvalidateTags with any of them
// makes it unusable, as it does the routes declaring the same tags.
func WithTags(tags ...string) LoadOption {
	return func(o *loadOptions) error {
		for _, t := range tags {
			if t == "" {
				return errors.New("routecache: WithTags: empty tag")
			}
		}
		o.tags = append(o.tags, tags...)
		return nil
	}
}

// WithKeyTags derives more tags from the key at each call, for Memoize
// wrappers whose tags depend on the argument:
//
//	core.Memoize(rc, "articles", articleKey, repo.Article,
//	    core.WithKeyTags(func(key string) []string { return []string{key} }))
//
// A call whose function returns an empty tag runs uncached (counted as
// the bypass reason "key").
func WithKeyTags(f func(key string) []string) LoadOption {
	return func(o *loadOptions) error {
		if f == nil {
			return errors.New("routecache: WithKeyTags: nil function")
		}
		o.tagFn = f
		return nil
	}
}

// WithCodec sets how values are encoded in the backend (default
// JSONCodec).
func WithCodec(c Codec) LoadOption {
	return func(o *loadOptions) error {
		if c == nil {
			return errors.New("routecache: WithCodec: nil codec")
		}
		o.codec = c
		return nil
	}
}

func loadOpts(opts []LoadOption) (*loadOptions, error) {
	o := &loadOptions{codec: JSONCodec}
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

// Load returns the value cached in region under key, or runs fn to
// compute it, stores it and returns it: dogpile.cache's
// cache_on_arguments for Go, with the rules cached routes follow.
//
// The key names the value within the region; it shares the key counter of
// routes whose Key template expands to the same text, so
// Cache.InvalidateKey(ctx, region, key) reaches both, but never their
// entries. An unknown region, an empty key or a bad option is an error,
// and fn does not run.
//
//   - A lookup reads the entry and every counter it depends on (the
//     region's, the key's, each tag's) in one round trip; the entry is
//     used only while each counter still holds the value it had before
//     the function ran. Cache.InvalidateTags, InvalidateKey and
//     InvalidateRegion therefore reach memoized values and cached routes
//     alike: a route with Tags("article:{id}") and a Load with
//     WithTags("article:42") go together.
//   - Concurrent callers of one key in one process run the function once
//     (coalescing); across instances sharing Redis or Memcached, a lease
//     lets one instance run it while the others wait for its entry, up to
//     the region's LeaseWait, or until the lease is released without one
//     (then one of them takes the lease and runs fn).
//   - The function runs on a context detached from the caller's (its
//     values kept, its cancellation not), bounded by the region's
//     FillTimeout, so that one caller giving up does not fail the others;
//     each caller still returns as soon as its own context is done.
//   - Stale-while-revalidate (RegionConfig.Stale): a stale value is
//     returned at once and recomputed in the background, at most once per
//     key and MaxRefreshes per region. Stale-if-error (StaleIfError): when
//     the function fails or panics, a value within that window is returned
//     instead of the error. EarlyRefresh (XFetch) applies as for routes.
//   - An error is never stored. Callers that waited for a run that failed
//     receive the same error (as dogpile does), unless they hold a
//     stale-if-error value; a panic is re-raised in the caller that
//     started the run and reported to the others as an error.
//   - Backend errors fail open: the function runs, its value is returned,
//     the error is counted in Stats.Errors and logged, never returned. A
//     stored value that does not decode is a miss (Stats.Corrupt); a value
//     the codec cannot encode is returned but not stored
//     (Stats.NotStored["encode"]).
//   - The caller whose call ran the function gets its value as returned;
//     every other caller gets its own copy, decoded from the stored bytes
//     (or, when the value could not be encoded, shares the same value).
//     A caller that joined a run after an invalidation that run did not
//     see looks up again rather than take the older value.
//   - A caller waits for a run at most its region's FillTimeout: past it,
//     it gets an error wrapping context.DeadlineExceeded (or a
//     stale-if-error value), whether the run is its own or another
//     caller's: the callers of a stuck run never call fn themselves.
//   - Cache.Close waits for the runs still going on in the background, at
//     most the longest FillTimeout plus a second.
//
// Memoized values are counted in the region's Stats, and reported to its
// Observers, together with its routes.
func Load[T any](ctx context.Context, rc *Cache, region, key string, fn func(context.Context) (T, error), opts ...LoadOption) (T, error) {
	var zero T
	if rc == nil {
		return zero, errors.New("routecache: Load: nil Cache")
	}
	if fn == nil {
		return zero, errors.New("routecache: Load: nil function")
	}
	r, err := rc.Region(region)
	if err != nil {
		return zero, err
	}
	o, err := loadOpts(opts)
	if err != nil {
		return zero, err
	}
	return load(ctx, r, o, key, fn)
}

// Memoize wraps fn so that its results are cached in region, under the
// key keyFn returns for each argument (see Load). The region, the
// functions and the options are checked here, once:
//
//	article, err := core.Memoize(rc, "articles",
//	    func(id int) string { return "article:" + strconv.Itoa(id) },
//	    repo.Article,
//	    core.WithKeyTags(func(key string) []string { return []string{key, "articles"} }))
//	...
//	a, err := article(ctx, 42) // runs repo.Article(ctx, 42) at most once per key at a time
//
// keyFn must return a distinct non-empty key for arguments with distinct
// results; a call for which it returns "" is an error.
func Memoize[K comparable, T any](rc *Cache, region string, keyFn func(K) string, fn func(context.Context, K) (T, error), opts ...LoadOption) (func(context.Context, K) (T, error), error) {
	if rc == nil {
		return nil, errors.New("routecache: Memoize: nil Cache")
	}
	if keyFn == nil || fn == nil {
		return nil, errors.New("routecache: Memoize: nil key or value function")
	}
	r, err := rc.Region(region)
	if err != nil {
		return nil, err
	}
	o, err := loadOpts(opts)
	if err != nil {
		return nil, err
	}
	if _, ok := o.codec.(bytesCodec); ok {
		if t := reflect.TypeFor[T](); t != reflect.TypeFor[[]byte]() && t != reflect.TypeFor[string]() {
			return nil, fmt.Errorf("routecache: Memoize: BytesCodec cannot hold a %s (want []byte or string)", t)
		}
	}
	return func(ctx context.Context, k K) (T, error) {
		return load(ctx, r, o, keyFn(k), func(ctx context.Context) (T, error) { return fn(ctx, k) })
	}, nil
}

// memoKey is the canonical key of a memoized value: length-prefixed
// fields like a route's, with "m" where a route has its HTTP method (always
// "GET" there), so no memo key equals any route's.
func (r *Region) memoKey(key string) string {
	kb := keyBuilder{b: make([]byte, 0, len(r.ns)+len(r.name)+len(key)+24)}
	kb.b = append(kb.b, r.ns...)
	kb.field(keyFormat)
	kb.field(r.name)
	kb.field("m")
	kb.field(key)
	return string(kb.b)
}

// memoCall is one Load call's lookup state.
type memoCall struct {
	r         *Region
	o         *loadOptions
	key       string
	canonical string
	skey      string
	names     []string
}

func load[T any](ctx context.Context, r *Region, o *loadOptions, key string, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if key == "" {
		return zero, errors.New("routecache: memoize: empty key")
	}
	if r.c.closed.Load() {
		r.stats.addBypass(BypassClosed)
		return fn(ctx)
	}
	if !r.brk.allow() {
		r.stats.addBypass(BypassBreaker)
		return fn(ctx)
	}
	mc := &memoCall{r: r, o: o, key: key, canonical: r.memoKey(key)}
	mc.skey = r.storageKey(mc.canonical)
	var extra []string
	if o.tagFn != nil {
		extra = o.tagFn(key)
	}
	mc.names = make([]string, 0, 2+len(o.tags)+len(extra))
	mc.names = append(mc.names, r.regionCounter, r.keyCounter(key))
	for _, t := range o.tags {
		mc.names = append(mc.names, r.tagCounter(t))
	}
	for _, t := range extra {
		if t == "" {
			r.stats.addBypass(BypassKey)
			return fn(ctx)
		}
		mc.names = append(mc.names, r.tagCounter(t))
	}
	return memoGet(ctx, mc, fn, 0)
}

// memoGet is one attempt at a lookup. A caller that waited for a fill
// whose value it may not use (computed before an invalidation this caller
// saw) looks up again once, then runs fn itself.
func memoGet[T any](ctx context.Context, mc *memoCall, fn func(context.Context) (T, error), attempt int) (T, error) {
	var zero T
	r := mc.r
	vals := make([]uint64, len(mc.names))
	e, err := r.lookup(ctx, mc.skey, mc.names, vals)
	if err != nil {
		r.stats.addBypass(BypassBackend)
		return fn(ctx)
	}
	now := time.Now().UnixNano()
	var fallback *backend.Entry
	switch r.classify(ctx, nil, e, mc.canonical, mc.names, vals, now) {
	case fresh:
		if v, ok := memoDecode[T](mc, e.Body); ok {
			r.stats.hits.Add(1)
			if o := r.observer(); o != nil {
				o.Hit(r.name)
			}
			if r.cfg.EarlyRefresh > 0 && xfetch(e, now, r.cfg.EarlyRefresh) {
				r.stats.earlyRefreshes.Add(1)
				memoRefresh(ctx, mc, vals, fn)
			}
			return v, nil
		}
	case staleOK:
		if v, ok := memoDecode[T](mc, e.Body); ok {
			r.stats.stale.Add(1)
			if o := r.observer(); o != nil {
				o.Stale(r.name)
			}
			memoRefresh(ctx, mc, vals, fn)
			return v, nil
		}
	case errorOnly:
		fallback = e
	}

	f, leader := r.c.memo.join(mc.skey)
	if leader {
		if r.c.memo.start() {
			go func() {
				defer r.c.memo.done()
				memoFill(context.WithoutCancel(ctx), mc, f, slices.Clone(vals), fn, false)
			}()
		} else { // the Cache is closing: run uncached
			f.res.names = mc.names
			memoRun(ctx, mc, &f.res, fn)
			r.c.memo.land(mc.skey, f)
		}
	}
	timer := time.NewTimer(r.cfg.FillTimeout)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		return zero, fmt.Errorf("routecache: memoize %q: %w", mc.key, ctx.Err())
	case <-timer.C:
		// The fill outlived FillTimeout (its function ignores its context):
		// answer stale if allowed, else fail as the fill did. Calling fn
		// from every waiter would pile onto whatever the fill is stuck on.
		if fallback != nil {
			if v, ok := memoDecode[T](mc, fallback.Body); ok {
				r.stats.stale.Add(1)
				r.stats.staleIfError.Add(1)
				return v, nil
			}
		}
		return zero, fmt.Errorf("routecache: memoize %q: fill exceeded FillTimeout %v: %w", mc.key, r.cfg.FillTimeout, context.DeadlineExceeded)
	}
	res := &f.res
	if res.err != nil || res.panicked != nil {
		if fallback != nil {
			if v, ok := memoDecode[T](mc, fallback.Body); ok {
				r.stats.stale.Add(1)
				r.stats.staleIfError.Add(1)
				if o := r.observer(); o != nil {
					o.Stale(r.name)
				}
				return v, nil
			}
		}
		if res.panicked != nil {
			if leader {
				panic(res.panicked)
			}
			return zero, fmt.Errorf("routecache: memoized function for key %q panicked: %v", mc.key, res.panicked)
		}
		return zero, res.err
	}
	if leader && res.ran {
		v, _ := res.val.(T) // a nil interface value asserts to false
		return v, nil
	}
	// A waiter, or a leader whose fill found the value stored meanwhile.
	if !leader && !res.usableBy(mc.names, vals) {
		if attempt == 0 {
			return memoGet(ctx, mc, fn, 1)
		}
		return fn(ctx)
	}
	if res.body != nil {
		if v, ok := memoDecode[T](mc, res.body); ok {
			if !leader {
				r.stats.coalesced.Add(1)
			}
			r.stats.hits.Add(1)
			if o := r.observer(); o != nil {
				o.Hit(r.name)
			}
			return v, nil
		}
	}
	if v, ok := res.val.(T); ok && res.ran {
		// The value could not be encoded (or decoded back): share it as is.
		r.stats.coalesced.Add(1)
		r.stats.hits.Add(1)
		if o := r.observer(); o != nil {
			o.Hit(r.name)
		}
		return v, nil
	}
	if attempt == 0 {
		return memoGet(ctx, mc, fn, 1)
	}
	return fn(ctx)
}

// memoDecode decodes a stored value; a failure counts as a corrupt entry
// (a miss).
func memoDecode[T any](mc *memoCall, body []byte) (T, bool) {
	var v T
	if err := mc.o.codec.Unmarshal(body, &v); err != nil {
		mc.r.stats.corrupt.Add(1)
		if mc.r.errLogged.every(time.Second) {
			mc.r.c.log.Warn("routecache: memoized value does not decode; recomputing", "region", mc.r.name, "key", mc.key, "err", err)
		}
		var zero T
		return zero, false
	}
	return v, true
}

// decodes reports whether body decodes as a T (a fill must not settle for
// a stored value its callers cannot use).
func decodes[T any](mc *memoCall, body []byte) bool {
	var v T
	return mc.o.codec.Unmarshal(body, &v) == nil
}

// memoRefresh recomputes a stale (or early-expiring) value in the
// background, unless this key is being filled already or the region runs
// MaxRefreshes refreshes.
func memoRefresh[T any](ctx context.Context, mc *memoCall, vals []uint64, fn func(context.Context) (T, error)) {
	r := mc.r
	if r.c.closed.Load() {
		return
	}
	select {
	case r.refreshSem <- struct{}{}:
	default:
		r.stats.refreshSkipped.Add(1)
		return
	}
	f, leader := r.c.memo.join(mc.skey)
	if !leader {
		<-r.refreshSem
		return
	}
	if !r.c.memo.start() { // the Cache is closing
		r.c.memo.land(mc.skey, f)
		<-r.refreshSem
		return
	}
	r.stats.refreshes.Add(1)
	vals = slices.Clone(vals)
	go func() {
		defer r.c.memo.done()
		defer func() { <-r.refreshSem }()
		memoFill(context.WithoutCancel(ctx), mc, f, vals, fn, true)
		if f.res.err != nil {
			r.c.log.Warn("routecache: background refresh of a memoized value failed", "region", r.name, "key", mc.key, "err", f.res.err)
		}
	}()
}

// memoFill computes a key's value for the callers waiting on f, on a
// context without the caller's cancellation, and stores it. In a
// background refresh (refresh set) the current entry is known to need
// replacing, and another instance holding the lease means it is being
// replaced already.
func memoFill[T any](ctx context.Context, mc *memoCall, f *memoFlight, vals []uint64, fn func(context.Context) (T, error), refresh bool) {
	r := mc.r
	res := &f.res
	res.names = mc.names
	defer r.c.memo.land(mc.skey, f)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.FillTimeout)
	defer cancel()

	_, leasing := r.be.(backend.Leaser)
	leasing = leasing && r.cfg.LeaseTTL > 0
	switch {
	case refresh:
	case leasing:
		// Across instances: one runs fn, the others wait for its entry (see
		// Region.lease; the entry is read again once the lease is taken).
		e, release, out := r.lease(ctx, nil, mc.skey, mc.canonical, mc.names, vals, func(e *backend.Entry) bool { return decodes[T](mc, e.Body) })
		if release != nil {
			defer release()
		}
		switch out {
		case leaseFound, leaseAwaited:
			if out == leaseAwaited {
				r.stats.coalesced.Add(1) // filled by another instance
			}
			res.body, res.snap = e.Body, vals
			return
		case leaseTimeout:
			r.stats.leaseTimeouts.Add(1)
		}
	default:
		// Re-check inside the flight: a fill that just landed may have stored it.
		if e, err := r.recheck(ctx, mc.skey, mc.names, vals); err == nil &&
			r.classify(ctx, nil, e, mc.canonical, mc.names, vals, time.Now().UnixNano()) == fresh &&
			decodes[T](mc, e.Body) {
			res.body, res.snap = e.Body, vals
			return
		}
	}
	// The counters the entry will carry are read before fn runs: an
	// invalidation while it runs makes the entry unusable.
	if err := r.be.Ensure(ctx, mc.names, vals); err != nil {
		r.opDone(ctx, "ensure-counters", err)
		r.stats.addBypass(BypassBackend)
		memoRun(ctx, mc, res, fn) // uncached; not shared (no snapshot)
		return
	}
	if l, ok := r.be.(backend.Leaser); ok && leasing && refresh {
		// One refresh across instances: whoever holds the lease does it.
		lkey := r.leaseKey(mc.canonical)
		token, got, lerr := l.Acquire(ctx, lkey, r.cfg.LeaseTTL)
		switch {
		case lerr != nil:
			r.opDone(ctx, "lease", lerr)
		case !got:
			return // another instance is refreshing it
		default:
			defer func() {
				if rerr := l.Release(context.WithoutCancel(ctx), lkey, token); rerr != nil {
					r.opDone(ctx, "lease-release", rerr)
				}
			}()
		}
	}
	if !refresh {
		r.stats.misses.Add(1)
		if o := r.observer(); o != nil {
			o.Miss(r.name)
		}
	}
	start := time.Now()
	if !memoRun(ctx, mc, res, fn) {
		return
	}
	body, err := mc.o.codec.Marshal(res.val)
	if err != nil {
		r.stats.addNotStored(NotStoredEncode)
		if r.errLogged.every(time.Second) {
			r.c.log.Error("routecache: memoized value does not encode; not cached", "region", r.name, "key", mc.key, "err", err)
		}
		res.snap = vals
		return
	}
	res.body, res.snap = body, vals
	if int64(len(body)) > r.cfg.MaxEntryBytes {
		r.stats.addNotStored(NotStoredTooLarge)
		return
	}
	snap := make([]backend.CounterSnap, len(mc.names))
	for i, n := range mc.names {
		snap[i] = backend.CounterSnap{Name: n, Value: vals[i]}
	}
	e := r.newEntry(http.StatusOK, nil, body, mc.canonical, snap, start)
	e.Prepare()
	storeCtx, cancelStore := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FillTimeout)
	defer cancelStore()
	r.storeEntry(storeCtx, mc.skey, e)
}

// memoRun calls fn, recording its value, error or panic in res. It
// reports whether fn succeeded.
func memoRun[T any](ctx context.Context, mc *memoCall, res *memoResult, fn func(context.Context) (T, error)) (ok bool) {
	res.ran = true
	defer func() {
		if v := recover(); v != nil {
			res.panicked = v
			mc.r.stats.addNotStored(NotStoredPanic)
			mc.r.c.log.Error("routecache: memoized function panicked", "region", mc.r.name, "key", mc.key, "panic", v)
			ok = false
		}
	}()
	v, err := fn(ctx)
	if err != nil {
		res.err = err
		mc.r.stats.addNotStored(NotStoredError)
		return false
	}
	res.val = v
	return true
}

// memoResult is what a fill leaves for the callers that waited for it.
type memoResult struct {
	ran      bool   // fn ran (else body came from the backend)
	val      any    // fn's value, when it ran and succeeded
	err      error  // fn's error, shared with every caller of the flight
	panicked any    // fn's panic value
	body     []byte // the encoded value, nil if none
	names    []string
	snap     []uint64 // counter values the value was computed under; nil: unknown
}

// usableBy reports whether a caller that read vals for names may take this
// result: the fill's counter snapshot must be the one the caller saw (a
// counter the caller found missing had seen no invalidation). Otherwise an
// invalidation completed after the fill read its counters but before this
// caller looked, and the value may predate it.
func (res *memoResult) usableBy(names []string, vals []uint64) bool {
	if res.snap == nil || !slices.Equal(res.names, names) {
		return false
	}
	for i, v := range vals {
		if v != 0 && v != res.snap[i] {
			return false
		}
	}
	return true
}

// memoFlight is one in-process fill of a memoized key.
type memoFlight struct {
	done    chan struct{}
	res     memoResult
	waiters int // callers that joined after the leader (guarded by memoGroup.mu)
}

// memoGroup coalesces memoized fills by storage key (which includes the
// region, so one group serves the whole Cache), and tracks the fills
// running in the background so that Close can wait for them.
type memoGroup struct {
	mu      sync.Mutex
	m       map[string]*memoFlight
	active  int           // background fills running
	closing bool          // Close began: no new background fill
	idle    chan struct{} // closed when active drops to 0 while closing
}

// start registers a background fill; false once the Cache is closing.
func (g *memoGroup) start() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.active++
	return true
}

// done ends a background fill started with start.
func (g *memoGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// closeAndWait refuses new background fills and waits for the running
// ones, each bounded by its region's FillTimeout, so that none uses a
// closed backend.
func (g *memoGroup) closeAndWait(bound time.Duration) {
	g.mu.Lock()
	g.closing = true
	if g.active == 0 {
		g.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C: // a function ignoring its context: do not hang Close on it
	}
}

func (g *memoGroup) join(key string) (*memoFlight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		f.waiters++
		return f, false
	}
	if g.m == nil {
		g.m = make(map[string]*memoFlight)
	}
	f := &memoFlight{done: make(chan struct{})}
	g.m[key] = f
	return f, true
}

func (g *memoGroup) land(key string, f *memoFlight) {
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	close(f.done)
}
