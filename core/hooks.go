package core

import (
	"sync"

	"github.com/routecache/routecache/core/backend"
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
	// Soft is set for InvalidateTagsSoft / InvalidateRegionSoft (and
	// the purge endpoint's soft purges), made here or remotely.
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

// remoteEvent reports an invalidation another instance made, as its
// message described it (backend.Event), when it concerns this Cache: the
// counter it bumped is the one this Cache's regions name for that tag,
// region or key (the same Prefix and backend form). Nothing is parsed
// back from the counter name, which may be a hash. A message of the
// previous format (backend.EventCounter, naming only the counter) is not
// reported: the near cache that received it has dropped the counter.
func (c *Cache) remoteEvent(ev backend.Event) {
	e := InvalidationEvent{Remote: true, Soft: ev.Soft}
	switch ev.Kind {
	case backend.EventTag:
		if !c.ownsTagCounter(ev.Name, ev.Counter) {
			return
		}
		e.Kind, e.Names = InvalidationTag, []string{ev.Name}
	case backend.EventRegion:
		r := c.regions[ev.Region]
		if r == nil || r.regionCounter != ev.Counter {
			return
		}
		e.Kind, e.Region = InvalidationRegion, ev.Region
	case backend.EventKey:
		r := c.regions[ev.Region]
		if r == nil || r.keyCounter(ev.Name) != ev.Counter {
			return
		}
		e.Kind, e.Region, e.Names = InvalidationKey, ev.Region, []string{ev.Name}
	default:
		return
	}
	c.recordInvalidation(e, 0)
}

// ownsTagCounter reports whether counter is the tag's counter in one of
// this Cache's counter spaces.
func (c *Cache) ownsTagCounter(tag, counter string) bool {
	for _, r := range c.regions {
		if r.tagCounter(tag) == counter {
			return true
		}
	}
	return false
}
