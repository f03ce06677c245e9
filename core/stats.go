package core

import (
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of one region's counters since the Cache was created.
type Stats struct {
	Hits           uint64                     `json:"hits"`            // responses replayed from the cache
	Misses         uint64                     `json:"misses"`          // lookups that ran the handler to fill
	Coalesced      uint64                     `json:"coalesced"`       // hits served to requests that waited for another's fill
	Stores         uint64                     `json:"stores"`          // entries written
	Stale          uint64                     `json:"stale"`           // stale entries served (both kinds)
	StaleIfError   uint64                     `json:"stale_if_error"`  // stale entries served because the handler failed
	Refreshes      uint64                     `json:"refreshes"`       // background refreshes run
	RefreshSkipped uint64                     `json:"refresh_skipped"` // refreshes not started: MaxRefreshes reached
	EarlyRefreshes uint64                     `json:"early_refreshes"` // refreshes started early by XFetch
	Invalidations  uint64                     `json:"invalidations"`   // key, tag and region invalidations applied
	Errors         uint64                     `json:"errors"`          // backend errors (the request ran uncached)
	Corrupt        uint64                     `json:"corrupt"`         // stored values that failed to decode (served as misses)
	Bypasses       map[BypassReason]uint64    `json:"bypasses"`        // requests that skipped the cache, by reason
	NotStored      map[NotStoredReason]uint64 `json:"not_stored"`      // responses not stored, by reason
	LeaseTimeouts  uint64                     `json:"lease_timeouts"`  // waits for another instance's fill that gave up
	Breaker        BreakerState               `json:"breaker"`         // the backend's breaker: closed, open or half-open
	BreakerOpens   uint64                     `json:"breaker_opens"`   // times the breaker opened
	InvalidTags    uint64                     `json:"invalid_tags"`    // runtime tags ignored: empty, too long, or added after the fill
	// The backend's pending invalidations (invalqueue.go), reported in
	// every region on that backend: counter bumps it refused, queued and
	// retried until applied (while any is pending the region serves
	// nothing from the cache); bumps given up on at Close or made after
	// it; and failed retries.
	InvalidationsPending uint64 `json:"invalidations_pending"`
	InvalidationsLost    uint64 `json:"invalidations_lost"`
	InvalidationRetries  uint64 `json:"invalidation_retries"`
}

// regionStats holds a region's counters. They are written only through
// the event path below (Region.record and its siblings), which reports each
// event to the Cache's observers too, so Stats and the Observers always
// agree.
type regionStats struct {
	n         [nCounters]atomic.Uint64 // by counter
	bypass    [16]atomic.Uint64
	notStored [16]atomic.Uint64
}

// The counters of regionStats.n.
const (
	cNone = iota // no counter (an event's unused second counter)
	cHits
	cMisses
	cCoalesced
	cStores
	cStale
	cStaleIfError
	cRefreshes
	cRefreshSkipped
	cEarlyRefreshes
	cLeaseTimeouts
	cInvalidations
	cErrors
	cCorrupt
	cInvalidTags
	nCounters
)

// event is something the lifecycle counts in Stats (and, for the kinds
// the Observer interface names, reports to the observers).
type event uint8

const (
	evHit            event = iota // a fresh entry served: Hits, Observer.Hit
	evCoalescedHit                // a fresh entry served to a caller that waited for another's fill: Coalesced, Hits, Observer.Hit
	evStale                       // a stale entry served (stale-while-revalidate): Stale, Observer.Stale
	evStaleIfError                // a stale entry served for a failed fill: Stale, StaleIfError, Observer.Stale
	evMiss                        // a lookup that runs the producer to fill: Misses, Observer.Miss
	evCoalesced                   // a fill answered by another instance's (lease): Coalesced
	evRefresh                     // a background refresh started: Refreshes
	evEarlyRefresh                // a refresh started early by XFetch: EarlyRefreshes
	evRefreshSkipped              // a refresh not started (MaxRefreshes): RefreshSkipped
	evLeaseTimeout                // a wait for another instance's fill gave up: LeaseTimeouts
	evCorrupt                     // a stored value that does not decode: Corrupt
	evInvalidTag                  // a runtime tag ignored: InvalidTags
	nEvents
)

// eventCounters are the (up to two) counters each event adds one to.
var eventCounters = [nEvents][2]uint8{
	evHit:            {cHits, cNone},
	evCoalescedHit:   {cHits, cCoalesced},
	evStale:          {cStale, cNone},
	evStaleIfError:   {cStale, cStaleIfError},
	evMiss:           {cMisses, cNone},
	evCoalesced:      {cCoalesced, cNone},
	evRefresh:        {cRefreshes, cNone},
	evEarlyRefresh:   {cEarlyRefreshes, cNone},
	evRefreshSkipped: {cRefreshSkipped, cNone},
	evLeaseTimeout:   {cLeaseTimeouts, cNone},
	evCorrupt:        {cCorrupt, cNone},
	evInvalidTag:     {cInvalidTags, cNone},
}

// record counts ev and reports it to the observers.
func (r *Region) record(ev event) {
	k := &eventCounters[ev]
	r.stats.n[k[0]].Add(1)
	if k[1] != cNone {
		r.stats.n[k[1]].Add(1)
	}
	if o := r.c.obs.get(); o != nil {
		r.notify(o, ev)
	}
}

// notify reports ev to the observers.
func (r *Region) notify(o Observer, ev event) {
	switch ev {
	case evHit, evCoalescedHit:
		o.Hit(r.name)
	case evStale, evStaleIfError:
		o.Stale(r.name)
	case evMiss:
		o.Miss(r.name)
	}
}

// recordBypass counts a request (or call) that skipped the cache.
func (r *Region) recordBypass(reason BypassReason) {
	if i := slices.Index(bypassReasons, reason); i >= 0 {
		r.stats.bypass[i].Add(1)
	}
	if o := r.c.obs.get(); o != nil {
		o.Bypass(r.name, reason)
	}
}

// recordNotStored counts a response (or value) that was not stored.
func (r *Region) recordNotStored(reason NotStoredReason) {
	if i := slices.Index(notStoredReasons, reason); i >= 0 {
		r.stats.notStored[i].Add(1)
	}
	if o := r.c.obs.get(); o != nil {
		o.NotStored(r.name, reason)
	}
}

// recordStore counts an entry written, of a body of size bytes.
func (r *Region) recordStore(size int) {
	r.stats.n[cStores].Add(1)
	if o := r.c.obs.get(); o != nil {
		o.Store(r.name, size)
	}
}

// recordError counts and logs (at most once a second per region) a
// backend failure. The request it happened in runs uncached.
func (r *Region) recordError(op BackendOp, err error) {
	r.stats.n[cErrors].Add(1)
	if o := r.c.obs.get(); o != nil {
		o.BackendError(r.name, op, err)
	}
	if r.errLogged.Every(time.Second) {
		r.c.log.Error("routecache: backend error", "region", r.name, "op", op, "err", err)
	}
}

// recordInvalidation counts an invalidation in the regions it reached
// (n each: one per tag of a tag invalidation) and calls the OnInvalidate
// hooks. Remote events (another instance's, received over pub/sub) reach
// the hooks only: the instance that made them counted them.
func (c *Cache) recordInvalidation(ev InvalidationEvent, n uint64, regions ...*Region) {
	for _, r := range regions {
		r.stats.n[cInvalidations].Add(n)
	}
	c.hooks.mu.RLock()
	fns := c.hooks.fns
	c.hooks.mu.RUnlock()
	for _, f := range fns {
		f(ev)
	}
}

func (s *regionStats) snapshot() Stats {
	st := Stats{
		Hits: s.n[cHits].Load(), Misses: s.n[cMisses].Load(), Coalesced: s.n[cCoalesced].Load(),
		Stores: s.n[cStores].Load(), Stale: s.n[cStale].Load(), Invalidations: s.n[cInvalidations].Load(),
		Errors: s.n[cErrors].Load(), Corrupt: s.n[cCorrupt].Load(),
		StaleIfError: s.n[cStaleIfError].Load(), Refreshes: s.n[cRefreshes].Load(),
		RefreshSkipped: s.n[cRefreshSkipped].Load(), EarlyRefreshes: s.n[cEarlyRefreshes].Load(),
		LeaseTimeouts: s.n[cLeaseTimeouts].Load(),
		InvalidTags:   s.n[cInvalidTags].Load(),
		Bypasses:      make(map[BypassReason]uint64),
		NotStored:     make(map[NotStoredReason]uint64),
	}
	for i, r := range bypassReasons {
		if v := s.bypass[i].Load(); v > 0 {
			st.Bypasses[r] = v
		}
	}
	for i, r := range notStoredReasons {
		if v := s.notStored[i].Load(); v > 0 {
			st.NotStored[r] = v
		}
	}
	return st
}
