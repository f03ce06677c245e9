package core

import (
	"strings"
	"sync"
)

// InvalidationEvent describes an invalidation, made by this instance or,
// through a Redis near cache's pub/sub, by another one.
type InvalidationEvent struct {
	// Kind is InvalidationTag, InvalidationRegion or InvalidationKey.
	Kind InvalidationKind
	// Region is the region of a "region" or "key" event.
	Region string
	// Names holds the tags of a "tag" event, the key of a "key" event.
	Names []string
	// Remote is set when another instance made the invalidation.
	Remote bool
	// Soft is set for InvalidateTagsSoft / InvalidateRegionSoft (local
	// events only: pub/sub carries the counter, not the kind of bump).
	Soft bool
	// Pending is set on a local event when some of its counter bumps were
	// not applied yet: the backend refused them and they are queued,
	// retried until it takes them (see ErrInvalidationPending). Meanwhile
	// this process serves nothing from the regions on that backend.
	Pending bool
}

type hooks struct {
	mu  sync.RWMutex
	fns []func(InvalidationEvent)
}

// OnInvalidate registers f to be called after every invalidation this
// Cache accepts (applied, or queued for retry with Pending set) and, on Redis backends with a near cache (whose instances
// talk over pub/sub), every invalidation another instance makes. f runs
// synchronously (on the invalidating goroutine, or on the pub/sub
// receiver for remote events): keep it short, hand long work to a
// goroutine.
func (c *Cache) OnInvalidate(f func(InvalidationEvent)) {
	if f == nil {
		return
	}
	c.hooks.mu.Lock()
	c.hooks.fns = append(c.hooks.fns, f)
	c.hooks.mu.Unlock()
}

// remoteCounter turns a counter name received over pub/sub back into an
// event, for the regions of this Cache that share its prefix.
func (c *Cache) remoteCounter(counter string) {
	for _, name := range c.Regions() {
		r := c.regions[name]
		switch {
		case strings.HasPrefix(counter, r.tagCounterPrefix):
			c.recordInvalidation(InvalidationEvent{Kind: "tag", Names: []string{counter[len(r.tagCounterPrefix):]}, Remote: true}, 0)
			return
		case counter == r.regionCounter:
			c.recordInvalidation(InvalidationEvent{Kind: "region", Region: r.name, Remote: true}, 0)
			return
		case strings.HasPrefix(counter, r.keyCounterPrefix):
			c.recordInvalidation(InvalidationEvent{Kind: "key", Region: r.name, Names: []string{counter[len(r.keyCounterPrefix):]}, Remote: true}, 0)
			return
		}
	}
}
