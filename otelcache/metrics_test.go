package otelcache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/otelcache"
)

// collect reads every metric once, by name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelcache.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, otelcache.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// point returns the value of an int64 sum or gauge at the attributes kvs.
func point(t *testing.T, ms map[string]metricdata.Metrics, name string, kvs ...attribute.KeyValue) int64 {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		t.Fatalf("no metric %q", name)
	}
	want := attribute.NewSet(kvs...)
	var pts []metricdata.DataPoint[int64]
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
			t.Errorf("%s: not a cumulative monotonic sum", name)
		}
		pts = d.DataPoints
	case metricdata.Gauge[int64]:
		pts = d.DataPoints
	default:
		t.Fatalf("%s: data %T", name, m.Data)
	}
	for _, p := range pts {
		if p.Attributes.Equals(&want) {
			return p.Value
		}
	}
	t.Fatalf("%s: no point at %v", name, kvs)
	return 0
}

// The metrics mirror Cache.Stats, per region (and reason), and backend
// latency is a histogram.
func TestMetricsMirrorStats(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tp, _ := tracing(t)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {TTL: time.Hour}, "s": {}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	if err := otelcache.Instrument(rc, otelcache.Options{TracerProvider: tp, MeterProvider: mp}); err != nil {
		t.Fatal(err)
	}
	h := server(t, tp, rc, handler(tp))
	get(h, "/items/1")
	get(h, "/items/1")
	get(h, "/items/1", "Authorization", "Bearer x")

	ms := collect(t, reader)
	r := otelcache.RegionKey.String("r")
	for name, want := range map[string]int64{
		"routecache.hits": 1, "routecache.misses": 1, "routecache.stores": 1, "routecache.stale": 0,
		"routecache.backend_errors": 0, "routecache.invalidations_lost": 0,
	} {
		if got := point(t, ms, name, r); got != want {
			t.Errorf("%s{r} = %d, want %d", name, got, want)
		}
	}
	if got := point(t, ms, "routecache.hits", otelcache.RegionKey.String("s")); got != 0 {
		t.Errorf("routecache.hits{s} = %d, want 0", got)
	}
	if got := point(t, ms, "routecache.bypasses", r, otelcache.ReasonKey.String("authorization")); got != 1 {
		t.Errorf("bypasses{authorization} = %d, want 1", got)
	}
	if got := point(t, ms, "routecache.bypasses", r, otelcache.ReasonKey.String("cookie")); got != 0 {
		t.Errorf("bypasses{cookie} = %d, want 0 (every reason from the start)", got)
	}
	if got := point(t, ms, "routecache.not_stored", r, otelcache.ReasonKey.String("set-cookie")); got != 0 {
		t.Errorf("not_stored{set-cookie} = %d, want 0", got)
	}
	if got := point(t, ms, "routecache.breaker_open", r); got != 0 {
		t.Errorf("breaker_open = %d, want 0", got)
	}
	if got := point(t, ms, "routecache.invalidations_pending", r); got != 0 {
		t.Errorf("invalidations_pending = %d, want 0", got)
	}

	lat, ok := ms["routecache.backend_latency"]
	if !ok {
		t.Fatal("no routecache.backend_latency")
	}
	if lat.Unit != "s" {
		t.Errorf("latency unit %q, want s", lat.Unit)
	}
	hist, ok := lat.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("latency data %T", lat.Data)
	}
	counts := map[string]uint64{}
	for _, p := range hist.DataPoints {
		if v, ok := p.Attributes.Value(otelcache.RegionKey); ok && v.AsString() == "r" {
			op, _ := p.Attributes.Value(otelcache.OpKey)
			counts[op.AsString()] += p.Count
		}
	}
	// Two lookups, the fill's re-check and one store.
	if counts["get"] < 2 || counts["set"] != 1 {
		t.Errorf("latency counts %v, want get >= 2, set 1", counts)
	}
}

// Metrics only: no span attributes.
func TestNoTracing(t *testing.T) {
	tp, exp := tracing(t)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	if err := otelcache.Instrument(rc, otelcache.Options{TracerProvider: tp, MeterProvider: mp, NoTracing: true}); err != nil {
		t.Fatal(err)
	}
	h := server(t, tp, rc, handler(tp))
	get(h, "/items/1")
	r := one(t, exp)
	if _, ok := attrs(r.server.Attributes)[otelcache.OutcomeKey]; ok || len(r.children) != 1 {
		t.Errorf("NoTracing: attributes %v, spans %v", r.server.Attributes, r.names())
	}
	if got := point(t, collect(t, reader), "routecache.misses", otelcache.RegionKey.String("r")); got != 1 {
		t.Errorf("misses = %d, want 1", got)
	}
	if err := otelcache.Instrument(nil, otelcache.Options{}); err == nil {
		t.Error("Instrument(nil) did not fail")
	}
	if err := otelcache.Instrument(rc, otelcache.Options{MeterProvider: mp, Buckets: []float64{1, 0.5}}); err == nil || !strings.HasPrefix(err.Error(), "routecache: ") {
		t.Errorf("decreasing Buckets: %v", err)
	}
}
