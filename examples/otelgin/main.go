// Command otelgin is a Gin application traced with OpenTelemetry
// (otelgin), whose cache shows on its traces: the request's span carries
// routecache.outcome (hit, miss, stale, bypass), routecache.region,
// routecache.reason and routecache.age, and child spans cover the fill
// (with the handler's own spans under it) and, on Redis or Memcached,
// each backend operation. One line enables it: otelcache.Instrument.
//
//	go run ./examples/otelgin -addr 127.0.0.1:8080
//	go run ./examples/otelgin -backend redis://127.0.0.1:6379/0   # backend spans too
//	curl -i localhost:8080/hello/ada           # X-Cache: MISS, then HIT
//	curl -i -X POST localhost:8080/hello/ada   # invalidates tag hello:ada
//
// Each span is printed on stdout as it ends (a real application exports
// them with OTLP instead). Once listening it prints
// "listening on http://ADDR" on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
	"github.com/routecache/routecache/internal/exampleserver"
	"github.com/routecache/routecache/otelcache"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	backendURL := flag.String("backend", "", `the region's backend URL ("" is the embedded memory store)`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *backendURL, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// newCache builds the Cache, one region "pages", and shows it on tp's
// traces.
func newCache(pages core.RegionConfig, tp trace.TracerProvider) (*core.Cache, error) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"pages": pages}})
	if err != nil {
		return nil, err
	}
	// The one line. With zero Options it uses the global providers
	// (otel.SetTracerProvider, otel.SetMeterProvider).
	if err := otelcache.Instrument(rc, otelcache.Options{TracerProvider: tp}); err != nil {
		rc.Close()
		return nil, err
	}
	return rc, nil
}

// newRouter registers the routes behind otelgin's middleware. renders
// counts the origin's work; the handler's "render" span nests under the
// cache's fill span.
func newRouter(rc *core.Cache, tp trace.TracerProvider, renders *atomic.Int64) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(otelgin.Middleware("otelgin-example", otelgin.WithTracerProvider(tp)))
	r.GET("/hello/:name", ginadapter.Cache(rc, "pages", core.Tags("hello:{name}")), func(c *gin.Context) {
		_, span := tp.Tracer("example").Start(c.Request.Context(), "render")
		defer span.End()
		n := renders.Add(1)
		c.String(http.StatusOK, "hello %s (render #%d)\n", c.Param("name"), n)
	})
	r.POST("/hello/:name", ginadapter.Invalidate(rc, core.Tags("hello:{name}")), func(c *gin.Context) {
		c.Status(http.StatusNoContent)
	})
	return r
}

// run serves until ctx is done, printing each span to stdout.
func run(ctx context.Context, addr, backendURL string, stdout io.Writer) error {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(&printer{w: stdout}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	rc, err := newCache(core.RegionConfig{TTL: time.Minute, Backend: backendURL}, tp)
	if err != nil {
		return err
	}
	defer rc.Close()
	var renders atomic.Int64
	return exampleserver.Serve(ctx, addr, newRouter(rc, tp, &renders), stdout)
}

// printer is a span exporter writing one line per span: its name, trace
// and cache attributes.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

// ExportSpans prints spans.
func (p *printer) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range spans {
		var b strings.Builder
		fmt.Fprintf(&b, "span %q trace=%s", s.Name(), s.SpanContext().TraceID())
		for _, kv := range s.Attributes() {
			if strings.HasPrefix(string(kv.Key), "routecache.") || kv.Key == "http.route" {
				fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
			}
		}
		if s.Status().Description != "" {
			fmt.Fprintf(&b, " error=%q", s.Status().Description)
		}
		fmt.Fprintln(p.w, b.String())
	}
	return nil
}

// Shutdown does nothing.
func (p *printer) Shutdown(context.Context) error { return nil }
