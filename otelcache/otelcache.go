// Package otelcache shows a routecache Cache on OpenTelemetry traces and
// metrics, enabled in one line:
//
//	rc, err := core.New(cfg)
//	...
//	if err := otelcache.Instrument(rc, otelcache.Options{}); err != nil { ... }
//
// Zero Options use the global TracerProvider and MeterProvider
// (otel.SetTracerProvider, otel.SetMeterProvider), set before or after
// Instrument.
//
// Traces. Each cached request's active span (the server span otelgin,
// otelecho or otelhttp started) receives the cache's attributes:
//
//	routecache.region     the region
//	routecache.outcome    hit, miss, stale or bypass
//	routecache.reason     a bypass's reason, or why a miss's response was not stored
//	routecache.age        the age of the entry served (hit, stale), in seconds
//	routecache.stored     a miss: whether its response was stored
//	routecache.coalesced  true when answered from (or after waiting for) another request's fill
//
// A memoized value (core.Load, core.Memoize) adds the same attributes as
// a "routecache.load" event on the caller's span instead, since a handler
// may load many. Child spans cover the remote backend operations
// (Redis, Memcached; never the embedded memory store), named
// "routecache." + the operation (routecache.get, routecache.set,
// routecache.ensure-counters, routecache.get-counters, routecache.lease,
// routecache.lease-poll, routecache.lease-release, routecache.invalidate-tag,
// routecache.invalidate-key, routecache.invalidate-region), and the fills:
// routecache.fill around the handler (or memoized function) run and the
// store of its result, routecache.refresh for a refresh after a stale or
// early-expiring entry was served. The handler runs in the fill's context,
// so its own spans nest under routecache.fill.
//
// Spans are started only when the parent span is recording: with tracing
// off (no provider, or the request not sampled) a request pays a few
// checks and no allocation.
//
// Metrics mirror package prom's series (see the Metrics section of
// docs/observability.md): observable counters and gauges read from
// Cache.Stats at collection time, and a histogram of backend latency.
package otelcache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/routecache/routecache/core"
)

// ScopeName is the instrumentation scope of the Tracer and Meter.
const ScopeName = "github.com/routecache/routecache/otelcache"

// The attribute keys of spans, span events and metrics.
const (
	RegionKey    = attribute.Key("routecache.region")
	OutcomeKey   = attribute.Key("routecache.outcome")
	ReasonKey    = attribute.Key("routecache.reason")
	AgeKey       = attribute.Key("routecache.age")
	StoredKey    = attribute.Key("routecache.stored")
	CoalescedKey = attribute.Key("routecache.coalesced")
	MemoizedKey  = attribute.Key("routecache.memoized") // on fill spans of memoized functions
	OpKey        = attribute.Key("routecache.op")       // the backend operation (spans, latency histogram)
)

// LoadEvent is the name of the span event a memoized value's outcome is
// recorded as.
const LoadEvent = "routecache.load"

// Options configures Instrument. The zero value traces and measures with
// the global providers.
type Options struct {
	// TracerProvider makes the spans. Nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics. Nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// NoTracing leaves out span attributes and spans.
	NoTracing bool
	// NoMetrics leaves out the metrics.
	NoMetrics bool
	// Buckets are the latency histogram's bounds, in seconds (increasing).
	// Nil means DefaultBuckets.
	Buckets []float64
}

// DefaultBuckets are the latency histogram's bounds, in seconds: those of
// package prom, from 100 µs (an in-process lookup) to 1 s.
var DefaultBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}

// Instrument adds an observer to rc (Cache.AddObserver) that sets the
// cache's attributes on each request's span and starts spans for backend
// operations and fills, and registers rc's metrics with the MeterProvider.
// Call it once per Cache; an observer cannot be removed. A nil Cache or
// Buckets that are not increasing are an error.
func Instrument(rc *core.Cache, opts Options) error {
	if rc == nil {
		return errors.New("routecache: otelcache: nil Cache")
	}
	if opts.NoTracing && opts.NoMetrics {
		return nil
	}
	o := &observer{}
	if !opts.NoTracing {
		tp := opts.TracerProvider
		if tp == nil {
			tp = otel.GetTracerProvider()
		}
		o.tracer = tp.Tracer(ScopeName)
	}
	if !opts.NoMetrics {
		mp := opts.MeterProvider
		if mp == nil {
			mp = otel.GetMeterProvider()
		}
		buckets := opts.Buckets
		if buckets == nil {
			buckets = DefaultBuckets
		}
		for i, b := range buckets {
			if math.IsNaN(b) || math.IsInf(b, 0) || i > 0 && b <= buckets[i-1] {
				return fmt.Errorf("routecache: otelcache: Buckets %v are not finite and increasing", buckets)
			}
		}
		if err := registerMetrics(rc, mp.Meter(ScopeName), o, buckets); err != nil {
			return fmt.Errorf("routecache: otelcache: %w", err)
		}
	}
	rc.AddObserver(o)
	return nil
}

// observer is the core.Observer (and core.Tracer) Instrument adds.
type observer struct {
	core.NopObserver
	tracer trace.Tracer // nil with NoTracing
	// latency and its measurement options by region and operation
	// (resolved once, so that a measurement allocates nothing); nil with
	// NoMetrics.
	latency     metric.Float64Histogram
	latencyOpts map[[2]string][]metric.RecordOption
}

var _ core.Tracer = (*observer)(nil)

// BackendLatency records a backend operation's duration.
func (o *observer) BackendLatency(region string, op core.BackendOp, d time.Duration) {
	if o.latency == nil {
		return
	}
	opts, ok := o.latencyOpts[[2]string{region, string(op)}]
	if !ok {
		opts = []metric.RecordOption{metric.WithAttributes(RegionKey.String(region), OpKey.String(string(op)))}
	}
	o.latency.Record(context.Background(), d.Seconds(), opts...)
}

// Outcome sets the request's outcome on its span (a memoized value's as
// an event), if the span is recording.
func (o *observer) Outcome(ctx context.Context, out core.Outcome) {
	if o.tracer == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, RegionKey.String(out.Region), OutcomeKey.String(string(out.Result)))
	switch {
	case out.Bypass != "":
		attrs = append(attrs, ReasonKey.String(string(out.Bypass)))
	case out.NotStored != "":
		attrs = append(attrs, ReasonKey.String(string(out.NotStored)))
	}
	switch out.Result {
	case core.ResultHit, core.ResultStale:
		attrs = append(attrs, AgeKey.Float64(out.Age.Seconds()))
	case core.ResultMiss:
		if !out.Coalesced {
			attrs = append(attrs, StoredKey.Bool(out.Stored))
		}
	}
	if out.Coalesced {
		attrs = append(attrs, CoalescedKey.Bool(true))
	}
	if out.Memoized {
		span.AddEvent(LoadEvent, trace.WithAttributes(attrs...))
		return
	}
	span.SetAttributes(attrs...)
}

// StartOp starts a client span for a backend operation, if the parent
// span is recording.
func (o *observer) StartOp(ctx context.Context, region string, op core.BackendOp) (context.Context, core.Span) {
	if o.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{OpKey.String(string(op))}
	if region != "" {
		attrs = append(attrs, RegionKey.String(region))
	}
	ctx, span := o.tracer.Start(ctx, "routecache."+string(op), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, opSpan{span}
}

// StartFill starts the span of a fill or refresh, if the parent span is
// recording.
func (o *observer) StartFill(ctx context.Context, f core.Fill) (context.Context, core.Span) {
	if o.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	name := "routecache.fill"
	if f.Refresh {
		name = "routecache.refresh"
	}
	attrs := []attribute.KeyValue{RegionKey.String(f.Region)}
	if f.Memoized {
		attrs = append(attrs, MemoizedKey.Bool(true))
	}
	ctx, span := o.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	return ctx, fillSpan{span}
}

// opSpan is a backend operation's span.
type opSpan struct{ trace.Span }

// End ends the span, recording the operation's error.
func (s opSpan) End(e core.SpanEnd) {
	if e.Err != nil {
		s.RecordError(e.Err)
		s.SetStatus(codes.Error, e.Err.Error())
	}
	s.Span.End()
}

// fillSpan is a fill's span.
type fillSpan struct{ trace.Span }

// End ends the span with whether the result was stored, and the
// producer's failure.
func (s fillSpan) End(e core.SpanEnd) {
	s.SetAttributes(StoredKey.Bool(e.Stored))
	if e.NotStored != "" {
		s.SetAttributes(ReasonKey.String(string(e.NotStored)))
	}
	if e.Err != nil {
		s.RecordError(e.Err)
		s.SetStatus(codes.Error, e.Err.Error())
	}
	s.Span.End()
}
