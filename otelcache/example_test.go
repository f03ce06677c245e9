package otelcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/otelcache"
)

// One line shows the cache on the application's traces: each request's
// span (here started by hand, as otelhttp, otelgin or otelecho would)
// gets the cache's attributes, and a miss a routecache.fill span.
func ExampleInstrument() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"pages": {TTL: time.Minute}}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	if err := otelcache.Instrument(rc, otelcache.Options{TracerProvider: tp}); err != nil {
		panic(err)
	}

	cache, err := rc.Middleware("pages")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /hello/{name}", cache(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.PathValue("name"))
	})))
	for range 2 {
		ctx, span := tp.Tracer("server").Start(context.Background(), "GET /hello/{name}")
		req := httptest.NewRequest("GET", "/hello/ada", nil).WithContext(ctx)
		mux.ServeHTTP(httptest.NewRecorder(), req)
		span.End()
	}
	for _, s := range exp.GetSpans() {
		fmt.Print(s.Name)
		for _, kv := range s.Attributes {
			if kv.Key != otelcache.AgeKey { // varies
				fmt.Printf(" %s=%s", kv.Key, kv.Value.String())
			}
		}
		fmt.Println()
	}
	// Output:
	// routecache.fill routecache.region=pages routecache.stored=true
	// GET /hello/{name} routecache.region=pages routecache.outcome=miss routecache.stored=true
	// GET /hello/{name} routecache.region=pages routecache.outcome=hit
}

// With zero Options, Instrument uses the global providers, set before or
// after it.
func ExampleInstrument_globalProviders() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"pages": {}}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	if err := otelcache.Instrument(rc, otelcache.Options{}); err != nil {
		panic(err)
	}
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	otel.SetTracerProvider(tp)
	fmt.Println("instrumented")
	// Output: instrumented
}

// A memoized value's outcome is an event on the caller's span.
func ExampleLoadEvent() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"answers": {}}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	if err := otelcache.Instrument(rc, otelcache.Options{TracerProvider: tp, NoMetrics: true}); err != nil {
		panic(err)
	}
	ctx, span := tp.Tracer("app").Start(context.Background(), "handler")
	for range 2 {
		_, _ = core.Load(ctx, rc, "answers", "life", func(context.Context) (int, error) { return 42, nil })
	}
	span.End()
	for _, s := range exp.GetSpans() {
		for _, ev := range s.Events {
			fmt.Print(s.Name, ": ", ev.Name)
			for _, kv := range ev.Attributes {
				if kv.Key == otelcache.OutcomeKey {
					fmt.Print(" ", kv.Value.String())
				}
			}
			fmt.Println()
		}
	}
	// Output:
	// handler: routecache.load miss
	// handler: routecache.load hit
}
