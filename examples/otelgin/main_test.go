package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/internal/exampletest"
	"github.com/routecache/routecache/otelcache"
)

// app builds the example on backendURL with an in-memory span exporter.
func app(t *testing.T, backendURL string) (http.Handler, *tracetest.InMemoryExporter, *atomic.Int64) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	// A prefix of its own keeps the test apart on a shared server.
	rc, err := newCache(core.RegionConfig{TTL: time.Minute, Backend: backendURL, Prefix: fmt.Sprintf("otelgin%d", time.Now().UnixNano())}, tp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	var renders atomic.Int64
	return newRouter(rc, tp, &renders), exp, &renders
}

// traced serves GET path and returns the request's server span (otelgin's)
// and every span under it, by name.
func traced(t *testing.T, h http.Handler, exp *tracetest.InMemoryExporter, path, wantCache string) (tracetest.SpanStub, map[string]tracetest.SpanStub) {
	t.Helper()
	exp.Reset()
	if got := exampletest.Do(t, h, "GET", path).Header().Get("X-Cache"); got != wantCache {
		t.Fatalf("GET %s: X-Cache %q, want %q", path, got, wantCache)
	}
	var server tracetest.SpanStub
	under := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindServer {
			server = s
		} else {
			under[s.Name] = s
		}
	}
	if !server.SpanContext.IsValid() {
		t.Fatal("otelgin exported no server span")
	}
	for name, s := range under {
		if s.SpanContext.TraceID() != server.SpanContext.TraceID() {
			t.Errorf("span %q is not in the request's trace", name)
		}
	}
	return server, under
}

// has checks some attributes of a span.
func has(t *testing.T, s tracetest.SpanStub, want ...attribute.KeyValue) {
	t.Helper()
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		got[kv.Key] = kv.Value
	}
	for _, w := range want {
		if v, ok := got[w.Key]; !ok || v != w.Value {
			t.Errorf("span %q: %s = %v, want %v", s.Name, w.Key, v.String(), w.Value.String())
		}
	}
}

// A miss and a hit, as a trace shows them: the cache's attributes on
// otelgin's span, the fill span with the handler's span under it, and on
// Redis a span per backend operation.
func TestTraceShowsTheCache(t *testing.T) {
	for _, name := range []string{"memory", "redis"} {
		t.Run(name, func(t *testing.T) {
			url := ""
			if name == "redis" {
				url = "redis://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=2s"
			}
			h, exp, _ := app(t, url)
			server, under := traced(t, h, exp, "/hello/ada", "MISS")
			has(t, server, otelcache.RegionKey.String("pages"), otelcache.OutcomeKey.String("miss"), otelcache.StoredKey.Bool(true))
			fill, ok := under["routecache.fill"]
			if !ok {
				t.Fatalf("no routecache.fill span (have %v)", keys(under))
			}
			if fill.Parent.SpanID() != server.SpanContext.SpanID() {
				t.Error("routecache.fill is not a child of otelgin's span")
			}
			if r := under["render"]; r.Parent.SpanID() != fill.SpanContext.SpanID() {
				t.Error("the handler's span is not a child of routecache.fill")
			}
			backendSpans := []string{"routecache.get", "routecache.ensure-counters", "routecache.lease", "routecache.set"}
			for _, op := range backendSpans {
				_, ok := under[op]
				if want := url != ""; ok != want {
					t.Errorf("span %s present: %v, want %v (have %v)", op, ok, want, keys(under))
				}
			}

			server, under = traced(t, h, exp, "/hello/ada", "HIT")
			has(t, server, otelcache.OutcomeKey.String("hit"))
			if _, ok := under["routecache.fill"]; ok {
				t.Error("a hit has a fill span")
			}
			if _, ok := under["routecache.get"]; ok != (url != "") {
				t.Errorf("hit: spans %v", keys(under))
			}
		})
	}
}

func keys(m map[string]tracetest.SpanStub) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// The example's routes behave as the plain Gin example's.
func TestOtelginExample(t *testing.T) {
	h, _, renders := app(t, "")
	exampletest.HelloScenario(t, h, renders.Load)
}

// run listens, announces the address and serves until cancelled.
func TestOtelginRun(t *testing.T) {
	exampletest.SmokeRun(t, func(ctx context.Context, addr string, stdout io.Writer) error {
		return run(ctx, addr, "", stdout)
	})
}
