package otelcache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/otelcache"
)

// discard is an http.ResponseWriter that allocates nothing.
type discard struct{ h http.Header }

func (w *discard) Header() http.Header { return w.h }

func (w *discard) WriteHeader(int) {}

func (w *discard) Write(b []byte) (int, error) { return len(b), nil }

// With tracing off (a request that is not sampled), instrumenting adds no
// allocation to a hit.
func TestHitAllocsWhenNotSampled(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts of pooled paths vary under -race (sync.Pool drops items at random)")
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	allocs := func(instrument bool) float64 {
		rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {TTL: time.Hour}}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if instrument {
			if err := otelcache.Instrument(rc, otelcache.Options{TracerProvider: tp, NoMetrics: true}); err != nil {
				t.Fatal(err)
			}
		}
		mw, err := rc.Middleware("r")
		if err != nil {
			t.Fatal(err)
		}
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "body") }))
		// A request under an unsampled span, as a server middleware makes.
		ctx, span := tp.Tracer("test").Start(context.Background(), "GET", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		req := httptest.NewRequest("GET", "/items/1", nil).WithContext(ctx)
		w := &discard{h: http.Header{}}
		h.ServeHTTP(w, req) // fill
		return testing.AllocsPerRun(200, func() {
			clear(w.h)
			h.ServeHTTP(w, req)
			if w.h.Get("X-Cache") != "HIT" {
				t.Fatalf("X-Cache %q", w.h.Get("X-Cache"))
			}
		})
	}
	without, with := allocs(false), allocs(true)
	if with != without {
		t.Fatalf("hit allocations: %v instrumented, %v without", with, without)
	}
}
