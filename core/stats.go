package core

import "sync/atomic"

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
	// The backend's pending invalidations (invalqueue.go), reported in
	// every region on that backend: counter bumps it refused, queued and
	// retried until applied (while any is pending the region serves
	// nothing from the cache); bumps given up on at Close or made after
	// it; and failed retries.
	InvalidationsPending uint64 `json:"invalidations_pending"`
	InvalidationsLost    uint64 `json:"invalidations_lost"`
	InvalidationRetries  uint64 `json:"invalidation_retries"`
}

type regionStats struct {
	hits, misses, coalesced, stores, stale, invalidations, errors, corrupt atomic.Uint64
	staleIfError, refreshes, refreshSkipped, earlyRefreshes, leaseTimeouts atomic.Uint64
	bypass                                                                 [16]atomic.Uint64
	notStored                                                              [16]atomic.Uint64
	// region and obs route events to the Cache's observers (observer.go).
	region string
	obs    *observerSlot
}

func reasonIndex[R ~string](list []R, reason R) int {
	for i, r := range list {
		if r == reason {
			return i
		}
	}
	return -1
}

func (s *regionStats) addBypass(reason BypassReason) {
	if i := reasonIndex(bypassReasons, reason); i >= 0 {
		s.bypass[i].Add(1)
	}
	if o := s.observer(); o != nil {
		o.Bypass(s.region, reason)
	}
}

func (s *regionStats) addNotStored(reason NotStoredReason) {
	if i := reasonIndex(notStoredReasons, reason); i >= 0 {
		s.notStored[i].Add(1)
	}
	if o := s.observer(); o != nil {
		o.NotStored(s.region, reason)
	}
}

func (s *regionStats) snapshot() Stats {
	st := Stats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), Coalesced: s.coalesced.Load(),
		Stores: s.stores.Load(), Stale: s.stale.Load(), Invalidations: s.invalidations.Load(),
		Errors: s.errors.Load(), Corrupt: s.corrupt.Load(),
		StaleIfError: s.staleIfError.Load(), Refreshes: s.refreshes.Load(),
		RefreshSkipped: s.refreshSkipped.Load(), EarlyRefreshes: s.earlyRefreshes.Load(),
		LeaseTimeouts: s.leaseTimeouts.Load(),
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
