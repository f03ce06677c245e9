// Package prom exports the counters of a routecache Cache to Prometheus.
//
// Nothing is registered on import: build a Collector for your Cache and
// register it yourself, on the default registry or your own.
//
//	rc, err := core.New(cfg)
//	...
//	prometheus.MustRegister(prom.NewCollector(rc))
//	http.Handle("/metrics", promhttp.Handler())
//
// Counts are read from Cache.Stats at scrape time (so they always agree
// with it); backend latency is a histogram fed by an Observer the
// Collector adds to the Cache. Every metric has a "region" label.
//
//	routecache_hits_total{region}                   responses and memoized values served fresh
//	routecache_misses_total{region}                 fills: the handler or function ran to fill the cache
//	routecache_stale_total{region}                  stale entries served (both kinds)
//	routecache_stale_if_error_total{region}         ...of which because the handler failed
//	routecache_coalesced_total{region}              hits served to callers that waited for another's fill
//	routecache_stores_total{region}                 entries written
//	routecache_bypasses_total{region,reason}        requests that skipped the cache
//	routecache_not_stored_total{region,reason}      responses and values not stored
//	routecache_invalidations_total{region}          key, tag and region invalidations applied
//	routecache_backend_errors_total{region}         failed backend operations (requests ran uncached)
//	routecache_corrupt_total{region}                stored values that did not decode (misses)
//	routecache_refreshes_total{region}              background refreshes run
//	routecache_refresh_skipped_total{region}        refreshes not started (MaxRefreshes reached)
//	routecache_early_refreshes_total{region}        refreshes started early by XFetch
//	routecache_lease_timeouts_total{region}         waits for another instance's fill that gave up
//	routecache_invalid_tags_total{region}           runtime tags ignored (empty, too long, added after the fill)
//	routecache_breaker_opens_total{region}          times the backend's circuit breaker opened
//	routecache_breaker_open{region}                 1 while the breaker is open or probing, else 0
//	routecache_invalidations_pending{region}        invalidations the backend refused, queued for retry (gauge)
//	routecache_invalidation_retries_total{region}   failed retries of pending invalidations
//	routecache_invalidations_lost_total{region}     invalidations never applied (given up at Close, or made after it)
//	routecache_backend_latency_seconds{region,op}   histogram of backend operations: op "get" (lookup) or "set" (store)
//
// The reason labels take every value of core.BypassReasons and
// core.NotStoredReasons, zeros included, so that rates work from the
// first event.
package prom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/routecache/routecache/core"
)

// DefaultBuckets are the latency histogram's buckets, in seconds: from
// 100 µs (an in-process lookup) to 1 s (a backend timing out).
var DefaultBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}

// Option configures a Collector.
type Option func(*options)

type options struct {
	namespace string
	buckets   []float64
	latency   bool
}

// WithNamespace replaces the metric name prefix "routecache".
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithBuckets sets the latency histogram's buckets (seconds, increasing).
func WithBuckets(b []float64) Option {
	return func(o *options) { o.buckets = append([]float64(nil), b...) }
}

// WithoutLatency leaves out the latency histogram, and with it the
// Observer that times every backend operation.
func WithoutLatency() Option { return func(o *options) { o.latency = false } }

// Collector is a prometheus.Collector of one Cache's metrics. Build it with
// NewCollector and register it once.
type Collector struct {
	rc       *core.Cache
	counters []counterDesc
	bypasses *prometheus.Desc
	notStore *prometheus.Desc
	breaker  *prometheus.Desc
	pending  *prometheus.Desc
	latency  *prometheus.HistogramVec // nil WithoutLatency
}

// counterDesc is one per-region counter and how to read it from Stats.
type counterDesc struct {
	desc *prometheus.Desc
	get  func(core.Stats) uint64
}

// NewCollector returns a Collector of rc's metrics. Unless WithoutLatency
// is given, it adds an Observer to rc (Cache.AddObserver) feeding the
// latency histogram, so build one Collector per Cache.
func NewCollector(rc *core.Cache, opts ...Option) *Collector {
	o := options{namespace: "routecache", buckets: DefaultBuckets, latency: true}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	name := func(n string) string { return prometheus.BuildFQName(o.namespace, "", n) }
	region := []string{"region"}
	c := &Collector{rc: rc}
	for _, m := range []struct {
		name, help string
		get        func(core.Stats) uint64
	}{
		{"hits_total", "Responses and memoized values served fresh from the cache.", func(s core.Stats) uint64 { return s.Hits }},
		{"misses_total", "Lookups that ran the handler or memoized function to fill the cache.", func(s core.Stats) uint64 { return s.Misses }},
		{"stale_total", "Stale entries served (stale-while-revalidate and stale-if-error).", func(s core.Stats) uint64 { return s.Stale }},
		{"stale_if_error_total", "Stale entries served because the handler or function failed.", func(s core.Stats) uint64 { return s.StaleIfError }},
		{"coalesced_total", "Hits served to callers that waited for another caller's fill.", func(s core.Stats) uint64 { return s.Coalesced }},
		{"stores_total", "Entries written to the backend.", func(s core.Stats) uint64 { return s.Stores }},
		{"invalidations_total", "Key, tag and region invalidations applied.", func(s core.Stats) uint64 { return s.Invalidations }},
		{"backend_errors_total", "Failed backend operations; the request ran uncached.", func(s core.Stats) uint64 { return s.Errors }},
		{"corrupt_total", "Stored values that failed to decode (served as misses).", func(s core.Stats) uint64 { return s.Corrupt }},
		{"refreshes_total", "Background refreshes run.", func(s core.Stats) uint64 { return s.Refreshes }},
		{"refresh_skipped_total", "Background refreshes not started because MaxRefreshes were running.", func(s core.Stats) uint64 { return s.RefreshSkipped }},
		{"early_refreshes_total", "Refreshes started early by XFetch.", func(s core.Stats) uint64 { return s.EarlyRefreshes }},
		{"lease_timeouts_total", "Waits for another instance's fill that gave up.", func(s core.Stats) uint64 { return s.LeaseTimeouts }},
		{"invalid_tags_total", "Runtime tags ignored: empty, too long, or added after the fill.", func(s core.Stats) uint64 { return s.InvalidTags }},
		{"breaker_opens_total", "Times the backend's circuit breaker opened.", func(s core.Stats) uint64 { return s.BreakerOpens }},
		{"invalidation_retries_total", "Failed retries of invalidations the backend refused (queued until applied).", func(s core.Stats) uint64 { return s.InvalidationRetries }},
		{"invalidations_lost_total", "Invalidations never applied: given up at Close, or made after it.", func(s core.Stats) uint64 { return s.InvalidationsLost }},
	} {
		c.counters = append(c.counters, counterDesc{prometheus.NewDesc(name(m.name), m.help, region, nil), m.get})
	}
	c.bypasses = prometheus.NewDesc(name("bypasses_total"), "Requests that skipped the cache, by reason.", []string{"region", "reason"}, nil)
	c.notStore = prometheus.NewDesc(name("not_stored_total"), "Responses and memoized values not stored, by reason.", []string{"region", "reason"}, nil)
	c.breaker = prometheus.NewDesc(name("breaker_open"), "1 while the backend's circuit breaker is open or half-open (probing), else 0.", region, nil)
	c.pending = prometheus.NewDesc(name("invalidations_pending"), "Invalidations the backend refused, queued and retried until applied; while any is pending the region serves nothing from the cache.", region, nil)
	if o.latency {
		c.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: o.namespace,
			Name:      "backend_latency_seconds",
			Help:      `Duration of backend operations: op "get" (an entry and its counters, one round trip) and "set" (an entry stored).`,
			Buckets:   o.buckets,
		}, []string{"region", "op"})
		lo := &latencyObserver{h: c.latency, known: map[[2]string]prometheus.Observer{}}
		for _, r := range rc.Regions() {
			for _, op := range []string{"get", "set"} {
				lo.known[[2]string{r, op}] = c.latency.WithLabelValues(r, op)
			}
		}
		rc.AddObserver(lo)
	}
	return c
}

// Describe sends the descriptors of every metric the Collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.counters {
		ch <- m.desc
	}
	ch <- c.bypasses
	ch <- c.notStore
	ch <- c.breaker
	ch <- c.pending
	if c.latency != nil {
		c.latency.Describe(ch)
	}
}

// Collect reads rc.Stats() and sends the current values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	bypass, notStored := core.BypassReasons(), core.NotStoredReasons()
	for region, st := range c.rc.Stats() {
		for _, m := range c.counters {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.get(st)), region)
		}
		for _, r := range bypass {
			ch <- prometheus.MustNewConstMetric(c.bypasses, prometheus.CounterValue, float64(st.Bypasses[r]), region, string(r))
		}
		for _, r := range notStored {
			ch <- prometheus.MustNewConstMetric(c.notStore, prometheus.CounterValue, float64(st.NotStored[r]), region, string(r))
		}
		open := 0.0
		if st.Breaker != core.BreakerClosed {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(c.breaker, prometheus.GaugeValue, open, region)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.InvalidationsPending), region)
	}
	if c.latency != nil {
		c.latency.Collect(ch)
	}
}

var _ prometheus.Collector = (*Collector)(nil)

// latencyObserver feeds the histogram; the series of the known regions
// and operations are resolved once, so an observation costs no label
// hashing.
type latencyObserver struct {
	core.NopObserver
	h     *prometheus.HistogramVec
	known map[[2]string]prometheus.Observer // read-only after construction
}

// BackendLatency records one backend operation's duration.
func (l *latencyObserver) BackendLatency(region string, op core.BackendOp, d time.Duration) {
	o, ok := l.known[[2]string{region, string(op)}]
	if !ok {
		o = l.h.WithLabelValues(region, string(op))
	}
	o.Observe(d.Seconds())
}
