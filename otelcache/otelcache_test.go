package otelcache_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/otelcache"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tracing is a TracerProvider exporting every span, as it ends, to an
// in-memory exporter.
func tracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// newCache builds a Cache of one region "r", instrumented with tp.
func newCache(t *testing.T, tp trace.TracerProvider, rc core.RegionConfig) *core.Cache {
	t.Helper()
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := otelcache.Instrument(c, otelcache.Options{TracerProvider: tp, NoMetrics: true}); err != nil {
		t.Fatal(err)
	}
	return c
}

// server serves h on GET /items/{id}, cached in region r with opts, under
// a server span (what otelhttp, otelgin or otelecho start).
func server(t *testing.T, tp trace.TracerProvider, rc *core.Cache, h http.HandlerFunc, opts ...core.RouteOption) http.Handler {
	t.Helper()
	mw, err := rc.Middleware("r", opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", mw(h))
	tr := tp.Tracer("test")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tr.Start(r.Context(), "GET /items/{id}", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
}

// get serves one request and returns its X-Cache header.
func get(h http.Handler, path string, header ...string) string {
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Header().Get("X-Cache")
}

// attrs maps a span's (or event's) attributes by key.
func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// request is one server span and the spans under it.
type request struct {
	server   tracetest.SpanStub
	children []tracetest.SpanStub // every descendant, in the order they ended
}

// names lists the descendants' names.
func (r request) names() []string {
	var n []string
	for _, s := range r.children {
		n = append(n, s.Name)
	}
	return n
}

// child returns the descendant named name.
func (r request) child(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range r.children {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q under the request (have %v)", name, r.names())
	return tracetest.SpanStub{}
}

// requests takes the spans exported so far, grouped by server span, and
// resets the exporter.
func requests(t *testing.T, exp *tracetest.InMemoryExporter) []request {
	t.Helper()
	spans := exp.GetSpans()
	exp.Reset()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	root := func(s tracetest.SpanStub) trace.SpanID {
		for s.Parent.IsValid() {
			p, ok := byID[s.Parent.SpanID()]
			if !ok {
				break
			}
			s = p
		}
		return s.SpanContext.SpanID()
	}
	var out []request
	idx := map[trace.SpanID]int{}
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindServer || (!s.Parent.IsValid() && s.Name == "caller") {
			idx[s.SpanContext.SpanID()] = len(out)
			out = append(out, request{server: s})
		}
	}
	for _, s := range spans {
		if _, isRoot := idx[s.SpanContext.SpanID()]; isRoot {
			continue
		}
		i, ok := idx[root(s)]
		if !ok {
			t.Fatalf("span %q belongs to no request", s.Name)
		}
		out[i].children = append(out[i].children, s)
	}
	return out
}

// one returns the only request exported since the last call.
func one(t *testing.T, exp *tracetest.InMemoryExporter) request {
	t.Helper()
	rs := requests(t, exp)
	if len(rs) != 1 {
		t.Fatalf("%d requests traced, want 1", len(rs))
	}
	return rs[0]
}

// wantAttrs checks some of a span's attributes.
func wantAttrs(t *testing.T, what string, kvs []attribute.KeyValue, want ...attribute.KeyValue) {
	t.Helper()
	got := attrs(kvs)
	for _, w := range want {
		if v, ok := got[w.Key]; !ok || v != w.Value {
			t.Errorf("%s: %s = %v, want %v (all: %v)", what, w.Key, v.String(), w.Value.String(), kvs)
		}
	}
}

// noAttr checks that a span lacks an attribute.
func noAttr(t *testing.T, what string, kvs []attribute.KeyValue, key attribute.Key) {
	t.Helper()
	if v, ok := attrs(kvs)[key]; ok {
		t.Errorf("%s: has %s = %v, want none", what, key, v.String())
	}
}

// handler answers with the item's id, under a span of its own.
func handler(tp trace.TracerProvider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, span := tp.Tracer("test").Start(r.Context(), "load item")
		defer span.End()
		_, _ = io.WriteString(w, "item "+r.PathValue("id"))
	}
}

// On the memory store: the outcome on the request's span, a fill span
// around the handler (whose own span nests under it), no backend spans.
func TestMemoryRequestAttributesAndFillSpan(t *testing.T) {
	tp, exp := tracing(t)
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Hour})
	h := server(t, tp, rc, handler(tp))

	if got := get(h, "/items/1"); got != "MISS" {
		t.Fatalf("first request: X-Cache %q", got)
	}
	miss := one(t, exp)
	wantAttrs(t, "miss", miss.server.Attributes,
		otelcache.RegionKey.String("r"), otelcache.OutcomeKey.String("miss"), otelcache.StoredKey.Bool(true))
	noAttr(t, "miss", miss.server.Attributes, otelcache.ReasonKey)
	if want := []string{"load item", "routecache.fill"}; !slices.Equal(miss.names(), want) {
		t.Fatalf("miss: spans %v, want %v (no backend spans on memory)", miss.names(), want)
	}
	fill := miss.child(t, "routecache.fill")
	if fill.Parent.SpanID() != miss.server.SpanContext.SpanID() {
		t.Error("the fill span is not a child of the request's span")
	}
	if miss.child(t, "load item").Parent.SpanID() != fill.SpanContext.SpanID() {
		t.Error("the handler's span is not a child of the fill span")
	}
	wantAttrs(t, "fill", fill.Attributes, otelcache.RegionKey.String("r"), otelcache.StoredKey.Bool(true))

	if got := get(h, "/items/1"); got != "HIT" {
		t.Fatalf("second request: X-Cache %q", got)
	}
	hit := one(t, exp)
	wantAttrs(t, "hit", hit.server.Attributes, otelcache.RegionKey.String("r"), otelcache.OutcomeKey.String("hit"))
	if age, ok := attrs(hit.server.Attributes)[otelcache.AgeKey]; !ok || age.AsFloat64() < 0 {
		t.Errorf("hit: age %v, want a number of seconds >= 0", age.String())
	}
	if len(hit.children) != 0 {
		t.Errorf("hit: spans %v, want none", hit.names())
	}

	// A bypass, with its reason.
	if got := get(h, "/items/1", "Authorization", "Bearer x"); got != "BYPASS" {
		t.Fatalf("authorized request: X-Cache %q", got)
	}
	bypass := one(t, exp)
	wantAttrs(t, "bypass", bypass.server.Attributes,
		otelcache.OutcomeKey.String("bypass"), otelcache.ReasonKey.String("authorization"))
}

// A response that is not stored: the reason on the request and the fill.
func TestNotStoredReason(t *testing.T) {
	tp, exp := tracing(t)
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Hour})
	h := server(t, tp, rc, func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
		_, _ = io.WriteString(w, "personal")
	})
	get(h, "/items/1")
	miss := one(t, exp)
	wantAttrs(t, "miss", miss.server.Attributes, otelcache.OutcomeKey.String("miss"),
		otelcache.StoredKey.Bool(false), otelcache.ReasonKey.String("set-cookie"))
	wantAttrs(t, "fill", miss.child(t, "routecache.fill").Attributes,
		otelcache.StoredKey.Bool(false), otelcache.ReasonKey.String("set-cookie"))
}

// A failing handler: the fill span is an error.
func TestFailedFillIsAnError(t *testing.T) {
	tp, exp := tracing(t)
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Hour})
	h := server(t, tp, rc, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})
	get(h, "/items/1")
	fill := one(t, exp).child(t, "routecache.fill")
	if fill.Status.Code != codes.Error || !strings.Contains(fill.Status.Description, "502") {
		t.Errorf("fill status %v %q, want an error naming 502", fill.Status.Code, fill.Status.Description)
	}
}

// A stale entry: outcome stale, and the refresh under the request.
func TestStaleAndRefreshSpan(t *testing.T) {
	tp, exp := tracing(t)
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Millisecond, Stale: time.Hour})
	h := server(t, tp, rc, handler(tp))
	get(h, "/items/1")
	exp.Reset()
	// The entry is stale once its millisecond has passed: poll, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for get(h, "/items/1") != "STALE" {
		if time.Now().After(deadline) {
			t.Fatal("never served stale")
		}
		exp.Reset()
	}
	rs := requests(t, exp)
	stale := rs[len(rs)-1]
	wantAttrs(t, "stale", stale.server.Attributes, otelcache.OutcomeKey.String("stale"))
	if _, ok := attrs(stale.server.Attributes)[otelcache.AgeKey]; !ok {
		t.Error("stale: no age")
	}
	refresh := stale.child(t, "routecache.refresh")
	wantAttrs(t, "refresh", refresh.Attributes, otelcache.StoredKey.Bool(true))
	noAttr(t, "stale", stale.server.Attributes, otelcache.StoredKey)
}

// A memoized value: its outcome is an event on the caller's span, its fill
// a span under it.
func TestMemoizedLoadEvents(t *testing.T) {
	tp, exp := tracing(t)
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Hour})
	load := func() {
		ctx, span := tp.Tracer("test").Start(context.Background(), "caller")
		defer span.End()
		v, err := core.Load(ctx, rc, "r", "answer", func(context.Context) (int, error) { return 42, nil })
		if err != nil || v != 42 {
			t.Fatalf("Load: %v, %v", v, err)
		}
	}
	load()
	load()
	rs := requests(t, exp)
	if len(rs) != 2 {
		t.Fatalf("%d callers traced, want 2", len(rs))
	}
	for i, want := range []string{"miss", "hit"} {
		caller := rs[i].server
		if len(caller.Events) != 1 || caller.Events[0].Name != otelcache.LoadEvent {
			t.Fatalf("call %d: events %v, want one %q", i, caller.Events, otelcache.LoadEvent)
		}
		wantAttrs(t, "load "+want, caller.Events[0].Attributes,
			otelcache.RegionKey.String("r"), otelcache.OutcomeKey.String(want))
		noAttr(t, "caller", caller.Attributes, otelcache.OutcomeKey)
	}
	fill := rs[0].child(t, "routecache.fill")
	wantAttrs(t, "memo fill", fill.Attributes, otelcache.MemoizedKey.Bool(true), otelcache.StoredKey.Bool(true))
	if len(rs[1].children) != 0 {
		t.Errorf("hit: spans %v, want none", rs[1].names())
	}
}

// Tracing off (the request not sampled): no span at all.
func TestNoSpansWhenNotSampled(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Hour})
	h := server(t, tp, rc, handler(tp))
	if a, b := get(h, "/items/1"), get(h, "/items/1"); a != "MISS" || b != "HIT" {
		t.Fatalf("X-Cache %q then %q", a, b)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans exported, want 0", n)
	}
}

// On Redis: spans around each backend operation, under the request (the
// store under the fill), and the same attributes.
func TestRedisBackendSpans(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	tp, exp := tracing(t)
	rc := newCache(t, tp, core.RegionConfig{
		TTL:     time.Hour,
		Backend: "redis://" + addr + "/0?timeout=2s",
		Prefix:  fmt.Sprintf("otel%d", backend.FreshCounter()%1e12),
	})
	h := server(t, tp, rc, handler(tp), core.Tags("item:{id}"))

	if got := get(h, "/items/1"); got != "MISS" {
		t.Fatalf("first request: X-Cache %q", got)
	}
	miss := one(t, exp)
	wantAttrs(t, "miss", miss.server.Attributes, otelcache.OutcomeKey.String("miss"), otelcache.StoredKey.Bool(true))
	server := miss.server.SpanContext.SpanID()
	fill := miss.child(t, "routecache.fill")
	for _, name := range []string{"routecache.get", "routecache.lease", "routecache.ensure-counters", "routecache.lease-release"} {
		s := miss.child(t, name)
		if s.Parent.SpanID() != server {
			t.Errorf("%s is not a child of the request's span", name)
		}
		if s.SpanKind != trace.SpanKindClient {
			t.Errorf("%s: kind %v, want client", name, s.SpanKind)
		}
		wantAttrs(t, name, s.Attributes, otelcache.RegionKey.String("r"))
	}
	if s := miss.child(t, "routecache.set"); s.Parent.SpanID() != fill.SpanContext.SpanID() {
		t.Error("routecache.set is not a child of the fill span")
	}
	wantAttrs(t, "get", miss.child(t, "routecache.get").Attributes, otelcache.OpKey.String("get"))

	if got := get(h, "/items/1"); got != "HIT" {
		t.Fatalf("second request: X-Cache %q", got)
	}
	hit := one(t, exp)
	wantAttrs(t, "hit", hit.server.Attributes, otelcache.OutcomeKey.String("hit"))
	if want := []string{"routecache.get"}; !slices.Equal(hit.names(), want) {
		t.Errorf("hit: spans %v, want %v", hit.names(), want)
	}

	// An invalidation under a span: the bump is a child span.
	ctx, span := tp.Tracer("test").Start(context.Background(), "caller")
	if err := rc.InvalidateTags(ctx, "item:1"); err != nil {
		t.Fatal(err)
	}
	span.End()
	inv := one(t, exp)
	bump := inv.child(t, "routecache.invalidate-tag")
	if bump.Status.Code == codes.Error {
		t.Errorf("invalidate-tag: status %v", bump.Status)
	}
	noAttr(t, "invalidate-tag", bump.Attributes, otelcache.RegionKey)
}

// A backend that fails: the operation's span is an error, the request a
// bypass with reason backend-error.
func TestRedisErrorSpan(t *testing.T) {
	tp, exp := tracing(t)
	// A port nothing listens on (the test servers' range is 27000-28999).
	rc := newCache(t, tp, core.RegionConfig{TTL: time.Hour, Backend: "redis://127.0.0.1:1/0?timeout=200ms"})
	h := server(t, tp, rc, handler(tp))
	if got := get(h, "/items/1"); got != "BYPASS" {
		t.Fatalf("X-Cache %q, want BYPASS", got)
	}
	r := one(t, exp)
	wantAttrs(t, "request", r.server.Attributes, otelcache.OutcomeKey.String("bypass"), otelcache.ReasonKey.String("backend-error"))
	if s := r.child(t, "routecache.get"); s.Status.Code != codes.Error {
		t.Errorf("get: status %v, want an error", s.Status.Code)
	}
}
