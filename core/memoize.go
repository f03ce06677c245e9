package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
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

func load[T any](ctx context.Context, r *Region, o *loadOptions, key string, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if key == "" {
		return zero, errors.New("routecache: memoize: empty key")
	}
	mf := &memoFront[T]{o: o, key: key, fn: fn}
	c := &call{r: r, fr: mf, ctx: ctx, fills: true}
	var reason BypassReason
	switch {
	case r.c.closed.Load():
		reason = BypassClosed
	case !r.brk.allow():
		reason = BypassBreaker
	default:
		c.canonical = r.memoKey(key)
		c.skey = r.storageKey(c.canonical)
		reason = c.memoNames(o, key)
	}
	if reason != "" {
		c.recordBypass(reason)
		err := mf.bypass(c, reason)
		return mf.v, err
	}
	err := c.serve(nil)
	return mf.v, err
}

// memoNames sets the counters a memoized value depends on: the region's,
// the key's, and each tag's. A derived tag that is empty makes the call a
// bypass (its reason is returned).
func (c *call) memoNames(o *loadOptions, key string) BypassReason {
	r := c.r
	var extra []string
	if o.tagFn != nil {
		extra = o.tagFn(key)
	}
	c.names = make([]string, 0, 2+len(o.tags)+len(extra))
	c.names = append(c.names, r.regionCounter, r.keyCounter(key))
	for _, t := range o.tags {
		c.names = append(c.names, r.tagCounter(t))
	}
	for _, t := range extra {
		if t == "" {
			return BypassKey
		}
		c.names = append(c.names, r.tagCounter(t))
	}
	c.vals = make([]uint64, len(c.names))
	return ""
}

// memoFront is a memoized value's side of the lifecycle (see front): a hit
// is a value decoded from the entry's body, the producer is the function,
// run in the background on a context detached from the callers', its
// result shared by every caller of the flight.
type memoFront[T any] struct {
	o   *loadOptions
	key string
	fn  func(context.Context) (T, error)
	// retried is set once the call looked up again, after a fill whose
	// value it could not take: the next time, it runs fn itself.
	retried bool
	v       T // the caller's value
}

func (mf *memoFront[T]) replay(c *call, e *backend.Entry, now int64, ev event) bool {
	v, ok := mf.decode(c.r, e.Body)
	if !ok {
		return false
	}
	mf.v = v
	c.r.record(ev)
	c.traceReplay(e, now, ev)
	return true
}

// accepts reports whether e's body decodes as a T (a fill must not settle
// for a stored value its callers cannot use).
func (mf *memoFront[T]) accepts(e *backend.Entry) bool {
	var v T
	return mf.o.codec.Unmarshal(e.Body, &v) == nil
}

func (mf *memoFront[T]) detached() bool { return true }

func (mf *memoFront[T]) bypass(c *call, _ BypassReason) (err error) {
	mf.v, err = mf.fn(c.ctx)
	return err
}

// produce calls fn, and encodes its value: the entry to store, and to
// share with the flight's callers even when it cannot be stored (too
// large); a value that does not encode is shared as is.
func (mf *memoFront[T]) produce(c *call, ctx context.Context, _ bool) (p produced) {
	r := c.r
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != nil {
				p.failed, p.panicked = true, v
				p.notStored(r, NotStoredPanic)
				r.c.log.Error("routecache: memoized function panicked", "region", r.name, "key", mf.key, "panic", v)
			}
		}()
		v, err := mf.fn(ctx)
		if err != nil {
			p.failed, p.err = true, err
			p.notStored(r, NotStoredError)
			return
		}
		p.val = v
	}()
	if p.failed {
		return p
	}
	p.snap = c.snapshot()
	body, err := mf.o.codec.Marshal(p.val)
	if err != nil {
		p.notStored(r, NotStoredEncode)
		if r.errLogged.Every(time.Second) {
			r.c.log.Error("routecache: memoized value does not encode; not cached", "region", r.name, "key", mf.key, "err", err)
		}
		return p
	}
	e := r.newEntry(http.StatusOK, nil, body, c.canonical, p.snap, start, r.regionLifetime())
	e.Prepare()
	p.share = e
	if int64(len(body)) > r.cfg.MaxEntryBytes {
		p.notStored(r, NotStoredTooLarge)
		return p
	}
	p.store = e
	return p
}

func (mf *memoFront[T]) settle(c *call, f *flight, o outcome) error {
	switch o {
	case outOwn:
		// The caller whose call started the run gets its value as returned.
		if f.failed {
			if c.staleIfError() {
				return nil
			}
			if f.panicked != nil {
				panic(f.panicked)
			}
			return f.err
		}
		mf.v, _ = f.val.(T) // a nil interface value asserts to false
		return nil
	case outGone:
		return fmt.Errorf("routecache: memoize %q: %w", mf.key, c.ctx.Err())
	case outTimedOut:
		return fmt.Errorf("routecache: memoize %q: fill exceeded FillTimeout %v: %w", mf.key, c.r.cfg.FillTimeout, context.DeadlineExceeded)
	case outFailed:
		// An error is shared with the callers that waited for it; a
		// panic is re-raised in the leader only.
		if f.panicked != nil {
			return fmt.Errorf("routecache: memoized function for key %q panicked: %v", mf.key, f.panicked)
		}
		return f.err
	}
	// outUnshared: a value that could not be encoded (or decoded back) is
	// shared as is, if computed under what this caller read, and unless an
	// invalidation is pending on the backend: the counters cannot tell
	// then what it would invalidate (invalqueue.go).
	if v, ok := f.val.(T); ok && f.ran && !c.r.invalidationPending() && snapshotAgrees(f.snap, c.names, c.vals) && c.othersAgree(f.snap) {
		mf.v = v
		c.r.record(evCoalescedHit)
		return nil
	}
	// Computed before an invalidation this caller saw, or not computed
	// here: look up again once, then run fn.
	if !mf.retried {
		mf.retried = true
		c.fallback = nil
		clear(c.vals)
		return c.serve(nil)
	}
	return mf.bypass(c, "")
}

// decode decodes a stored value; a failure counts as a corrupt entry (a
// miss).
func (mf *memoFront[T]) decode(r *Region, body []byte) (T, bool) {
	var v T
	if err := mf.o.codec.Unmarshal(body, &v); err != nil {
		r.record(evCorrupt)
		if r.errLogged.Every(time.Second) {
			r.c.log.Warn("routecache: memoized value does not decode; recomputing", "region", r.name, "key", mf.key, "err", err)
		}
		var zero T
		return zero, false
	}
	return v, true
}
