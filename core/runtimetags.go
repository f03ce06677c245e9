package core

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Runtime tags: tags an entry gets while it is produced, from AddTags or
// from the response headers named by RegionConfig.TagHeaders, rather than
// from the route's declaration.
//
// A declared tag's counter is read before the producer runs, so an
// invalidation during the fill leaves the entry born unusable. A runtime
// tag is only known once the producer has run: its counter is read then,
// after an invalidation that may have landed during the fill. The tag
// epoch closes that gap. Every tag invalidation bumps its counter space's
// epoch (Region.epochCounter) before it bumps the tags' counters; every
// fill reads the epoch with its counters before the producer runs; a fill
// that ends with runtime tags reads their counters first and the epoch
// second, in two calls. A tag counter read after its bump thus implies an
// epoch read after the epoch's bump: the epoch moved, and the entry is not
// stored (NotStoredInvalidated). A tag counter read before its bump is
// snapshotted with its old value, so the bump makes the entry unusable as
// for a declared tag.

// MaxTagBytes is the longest runtime tag accepted; longer ones are
// ignored (counted in Stats.InvalidTags).
const MaxTagBytes = 1024

// AddTags adds tags to the entry being filled: a handler calls it with its
// request's context (r.Context(), Gin's c.Request.Context(), Echo's
// c.Request().Context()), a memoized function with the context it was
// given. Cache.InvalidateTags with any of them then makes the entry
// unusable, as for tags declared with Tags or WithTags; a list page can
// carry one tag per item it shows.
//
// An invalidation of a tag during the fill, even before AddTags names it,
// makes the entry unusable (it is not stored: NotStoredInvalidated). An
// entry with more than RegionConfig.MaxTags runtime tags is not stored.
// AddTags is safe for concurrent use by goroutines the handler starts,
// until the handler returns: tags added later are ignored. An empty tag,
// or one longer than MaxTagBytes, is ignored, logged (at most once a
// second per region) and counted in Stats.InvalidTags.
//
// Outside a fill (a hit, a bypass, a context of another request, an
// uncached route) AddTags does nothing.
func AddTags(ctx context.Context, tags ...string) {
	if ctx == nil || len(tags) == 0 {
		return
	}
	if ts, _ := ctx.Value(tagSetKey{}).(*tagSet); ts != nil {
		ts.add(tags, true)
	}
}

// tagSetKey is the context key of a fill's tagSet.
type tagSetKey struct{}

// tagSet collects the runtime tags of one fill; a fill's producer finds
// it in its context. It is made on the miss path only.
type tagSet struct {
	r      *Region
	mu     sync.Mutex
	tags   []string
	seen   map[string]struct{} // once tags grows past a few
	over   bool                // more distinct tags than MaxTags
	closed bool                // the producer returned
}

// add adds tags (deduplicated). user is set for AddTags: tags added once
// the set is closed are then reported as ignored.
func (ts *tagSet) add(tags []string, user bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		if user {
			ts.invalid("routecache: AddTags after the handler returned: tags ignored", tags[0])
		}
		return
	}
	for _, t := range tags {
		if t == "" || len(t) > MaxTagBytes {
			ts.invalid("routecache: invalid runtime tag ignored (empty or longer than MaxTagBytes)", t)
			continue
		}
		if ts.has(t) {
			continue
		}
		if len(ts.tags) >= ts.r.cfg.MaxTags {
			ts.over = true
			continue
		}
		ts.tags = append(ts.tags, t)
		if ts.seen != nil {
			ts.seen[t] = struct{}{}
		} else if len(ts.tags) > 8 {
			ts.seen = make(map[string]struct{}, 2*len(ts.tags))
			for _, s := range ts.tags {
				ts.seen[s] = struct{}{}
			}
		}
	}
}

func (ts *tagSet) has(t string) bool {
	if ts.seen != nil {
		_, ok := ts.seen[t]
		return ok
	}
	return slices.Contains(ts.tags, t)
}

// invalid counts and logs (rate-limited) an ignored tag. ts.mu is held.
func (ts *tagSet) invalid(msg, tag string) {
	r := ts.r
	r.record(evInvalidTag)
	if r.errLogged.Every(time.Second) {
		if len(tag) > 64 {
			tag = tag[:64] + "..."
		}
		r.c.log.Warn(msg, "region", r.name, "tag", tag)
	}
}

// list returns a copy of the tags added so far.
func (ts *tagSet) list() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.tags)
}

// isOver reports whether more than MaxTags distinct tags were added so far.
func (ts *tagSet) isOver() bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.over
}

// close ends the collection and returns the tags, and whether there were
// more than MaxTags.
func (ts *tagSet) close() (tags []string, over bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.closed = true
	return ts.tags, ts.over
}

// takeHeaders removes the region's tag headers from h, adding their
// values (split on spaces and commas) as tags.
func (ts *tagSet) takeHeaders(h http.Header) {
	for _, name := range ts.r.tagHeaders {
		vs, ok := h[name]
		if !ok {
			continue
		}
		delete(h, name)
		for _, v := range vs {
			ts.add(strings.FieldsFunc(v, isTagSeparator), false)
		}
	}
}

func isTagSeparator(r rune) bool { return r == ' ' || r == ',' || r == '\t' }

// tagHeaderHook is the recorder's commit hook of a fill in a region with
// TagHeaders (nil without): the tag headers leave the response before its
// status line, before a miss's own headers are set (a CDN's Surrogate-Key
// the cache emits is then not taken for the handler's).
func (r *Region) tagHeaderHook(ts *tagSet, base func(*recorder)) func(*recorder) {
	switch {
	case len(r.tagHeaders) == 0 || ts == nil:
		return base
	case base != nil:
		return func(rw *recorder) { ts.takeHeaders(rw.Header()); base(rw) }
	}
	return func(rw *recorder) { ts.takeHeaders(rw.Header()) }
}

// tagSetOf returns the fill's tagSet in ctx, nil if none.
func tagSetOf(ctx context.Context) *tagSet {
	ts, _ := ctx.Value(tagSetKey{}).(*tagSet)
	return ts
}

// readEpoch reads the tag epoch before a producer runs that had no Ensure
// to read it with (a refresh), creating it when it is missing, as a
// fill's Ensure does: the epoch expires one counter lifetime after the
// last tag invalidation (no entry records it, so no store renews it),
// and a refresh that began with it missing could not tell it from an
// epoch the invalidation re-created and an eviction removed again before
// addRuntimeTags read it (both 0).
func (c *call) readEpoch(ctx context.Context) {
	names, v := []string{c.r.epochCounter}, []uint64{0}
	err := c.r.be.Counters(ctx, names, v)
	c.r.opDone(ctx, OpGetCounters, err)
	if err == nil && v[0] == 0 {
		err = c.r.be.Ensure(ctx, names, v)
		c.r.opDone(ctx, OpEnsureCounters, err)
	}
	c.epoch, c.epochOK = v[0], err == nil && v[0] != 0
}

// addRuntimeTags closes the fill's tag set and, when the producer added
// tags, extends what it produced with their counters, or keeps it from
// being stored and shared: too many tags, a backend failure, or the epoch
// moved since the fill read it (a tag invalidation ran meanwhile).
func (c *call) addRuntimeTags(ctx context.Context, ts *tagSet, p *produced) {
	tags, over := ts.close()
	e := p.store
	if e == nil {
		e = p.share
	}
	if e == nil || len(tags) == 0 && !over {
		return
	}
	r := c.r
	reason := NotStoredReason("")
	defer func() {
		if reason != "" {
			r.recordNotStored(reason)
			// Waiters neither take the entry nor (memoize) the value: they
			// look up again, or run the producer themselves.
			p.store, p.share, p.snap = nil, nil, nil
		}
	}()
	if over {
		reason = NotStoredTooManyTags
		return
	}
	if !c.epochOK {
		reason = NotStoredBackend
		return
	}
	names := make([]string, 0, len(tags))
	for _, t := range tags {
		if n := r.tagCounter(t); !slices.Contains(c.names, n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return // every one declared already
	}
	// The tags' counters first, the epoch second, in two calls: on a store
	// whose multi-get is not atomic (Memcached), a tag read after its bump
	// implies an epoch read after the epoch's.
	vals := make([]uint64, len(names))
	if err := r.be.Ensure(ctx, names, vals); err != nil {
		r.opDone(ctx, OpEnsureCounters, err)
		reason = NotStoredBackend
		return
	}
	epoch := []uint64{0}
	if err := r.be.Counters(ctx, []string{r.epochCounter}, epoch); err != nil {
		r.opDone(ctx, OpGetCounters, err)
		reason = NotStoredBackend
		return
	}
	if epoch[0] != c.epoch {
		reason = NotStoredInvalidated
		return
	}
	snap := make([]backend.CounterSnap, len(p.snap), len(p.snap)+len(names))
	copy(snap, p.snap)
	for i, n := range names {
		snap = append(snap, backend.CounterSnap{Name: n, Value: vals[i]})
	}
	p.snap = snap
	e.Counters = snap
}
