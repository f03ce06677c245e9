package otelcache

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/routecache/routecache/core"
)

// counter is one per-region counter of Stats and how to read it.
type counter struct {
	name, desc string
	get        func(core.Stats) uint64
}

// The counters, named as package prom's series are once a Prometheus
// exporter adds "_total" (routecache.hits: routecache_hits_total).
var counters = []counter{
	{"routecache.hits", "Responses and memoized values served fresh from the cache.", func(s core.Stats) uint64 { return s.Hits }},
	{"routecache.misses", "Lookups that ran the handler or memoized function to fill the cache.", func(s core.Stats) uint64 { return s.Misses }},
	{"routecache.stale", "Stale entries served (stale-while-revalidate and stale-if-error).", func(s core.Stats) uint64 { return s.Stale }},
	{"routecache.stale_if_error", "Stale entries served because the handler or function failed.", func(s core.Stats) uint64 { return s.StaleIfError }},
	{"routecache.coalesced", "Hits served to callers that waited for another caller's fill.", func(s core.Stats) uint64 { return s.Coalesced }},
	{"routecache.stores", "Entries written to the backend.", func(s core.Stats) uint64 { return s.Stores }},
	{"routecache.invalidations", "Key, tag and region invalidations applied.", func(s core.Stats) uint64 { return s.Invalidations }},
	{"routecache.backend_errors", "Failed backend operations; the request ran uncached.", func(s core.Stats) uint64 { return s.Errors }},
	{"routecache.corrupt", "Stored values that failed to decode (served as misses).", func(s core.Stats) uint64 { return s.Corrupt }},
	{"routecache.refreshes", "Background refreshes run.", func(s core.Stats) uint64 { return s.Refreshes }},
	{"routecache.refresh_skipped", "Background refreshes not started because MaxRefreshes were running.", func(s core.Stats) uint64 { return s.RefreshSkipped }},
	{"routecache.early_refreshes", "Refreshes started early by XFetch.", func(s core.Stats) uint64 { return s.EarlyRefreshes }},
	{"routecache.lease_timeouts", "Waits for another instance's fill that gave up.", func(s core.Stats) uint64 { return s.LeaseTimeouts }},
	{"routecache.breaker_opens", "Times the backend's circuit breaker opened.", func(s core.Stats) uint64 { return s.BreakerOpens }},
	{"routecache.invalidation_retries", "Failed retries of invalidations the backend refused (queued until applied).", func(s core.Stats) uint64 { return s.InvalidationRetries }},
	{"routecache.invalidations_lost", "Invalidations never applied: given up at Close, or made after it.", func(s core.Stats) uint64 { return s.InvalidationsLost }},
}

// registerMetrics creates rc's instruments on m: observable ones read
// from one rc.Stats() per collection, and the latency histogram o feeds.
func registerMetrics(rc *core.Cache, m metric.Meter, o *observer, buckets []float64) error {
	obs := make([]metric.Int64ObservableCounter, len(counters))
	all := make([]metric.Observable, 0, len(counters)+4)
	for i, c := range counters {
		inst, err := m.Int64ObservableCounter(c.name, metric.WithDescription(c.desc))
		if err != nil {
			return err
		}
		obs[i] = inst
		all = append(all, inst)
	}
	bypasses, err := m.Int64ObservableCounter("routecache.bypasses", metric.WithDescription("Requests that skipped the cache, by reason."))
	if err != nil {
		return err
	}
	notStored, err := m.Int64ObservableCounter("routecache.not_stored", metric.WithDescription("Responses and memoized values not stored, by reason."))
	if err != nil {
		return err
	}
	breakerOpen, err := m.Int64ObservableGauge("routecache.breaker_open", metric.WithDescription("1 while the backend's circuit breaker is open or half-open (probing), else 0."))
	if err != nil {
		return err
	}
	pending, err := m.Int64ObservableGauge("routecache.invalidations_pending", metric.WithDescription("Invalidations the backend refused, queued and retried until applied; while any is pending the region serves nothing from the cache."))
	if err != nil {
		return err
	}
	all = append(all, bypasses, notStored, breakerOpen, pending)

	// The attribute sets are resolved once: the regions are fixed.
	bypassReasons, notStoredReasons := core.BypassReasons(), core.NotStoredReasons()
	type regionSets struct {
		region    metric.ObserveOption
		bypass    []metric.ObserveOption
		notStored []metric.ObserveOption
	}
	sets := map[string]*regionSets{}
	for _, r := range rc.Regions() {
		s := &regionSets{region: metric.WithAttributeSet(attribute.NewSet(RegionKey.String(r)))}
		for _, why := range bypassReasons {
			s.bypass = append(s.bypass, metric.WithAttributeSet(attribute.NewSet(RegionKey.String(r), ReasonKey.String(string(why)))))
		}
		for _, why := range notStoredReasons {
			s.notStored = append(s.notStored, metric.WithAttributeSet(attribute.NewSet(RegionKey.String(r), ReasonKey.String(string(why)))))
		}
		sets[r] = s
	}
	_, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		for region, st := range rc.Stats() {
			s := sets[region]
			if s == nil {
				continue
			}
			for i, c := range counters {
				ob.ObserveInt64(obs[i], int64(c.get(st)), s.region)
			}
			// Every reason from the start, zeros included, as prom does.
			for i, why := range bypassReasons {
				ob.ObserveInt64(bypasses, int64(st.Bypasses[why]), s.bypass[i])
			}
			for i, why := range notStoredReasons {
				ob.ObserveInt64(notStored, int64(st.NotStored[why]), s.notStored[i])
			}
			open := int64(0)
			if st.Breaker != core.BreakerClosed {
				open = 1
			}
			ob.ObserveInt64(breakerOpen, open, s.region)
			ob.ObserveInt64(pending, int64(st.InvalidationsPending), s.region)
		}
		return nil
	}, all...)
	if err != nil {
		return err
	}

	o.latency, err = m.Float64Histogram("routecache.backend_latency",
		metric.WithDescription(`Duration of backend operations: op "get" (an entry and its counters, one round trip) and "set" (an entry stored).`),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(buckets...))
	if err != nil {
		return err
	}
	o.latencyOpts = map[[2]string][]metric.RecordOption{}
	for _, r := range rc.Regions() {
		for _, op := range []core.BackendOp{core.OpGet, core.OpSet} {
			o.latencyOpts[[2]string{r, string(op)}] = []metric.RecordOption{
				metric.WithAttributeSet(attribute.NewSet(RegionKey.String(r), OpKey.String(string(op)))),
			}
		}
	}
	return nil
}
