package core

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// recTracer records what a Tracer hears. spans makes its Start methods
// return a Span (else nil, as a tracer does when not recording).
type recTracer struct {
	NopObserver
	spans    bool
	mu       sync.Mutex
	outcomes []Outcome
	started  []string // "fill", "refresh" or the op
	ended    []SpanEnd
}

func (t *recTracer) Outcome(_ context.Context, o Outcome) {
	t.mu.Lock()
	t.outcomes = append(t.outcomes, o)
	t.mu.Unlock()
}

func (t *recTracer) start(ctx context.Context, what string) (context.Context, Span) {
	t.mu.Lock()
	t.started = append(t.started, what)
	t.mu.Unlock()
	if !t.spans {
		return ctx, nil
	}
	return ctx, recSpan{t}
}

func (t *recTracer) StartOp(ctx context.Context, _ string, op BackendOp) (context.Context, Span) {
	return t.start(ctx, string(op))
}

func (t *recTracer) StartFill(ctx context.Context, f Fill) (context.Context, Span) {
	if f.Refresh {
		return t.start(ctx, "refresh")
	}
	return t.start(ctx, "fill")
}

type recSpan struct{ t *recTracer }

func (s recSpan) End(e SpanEnd) {
	s.t.mu.Lock()
	s.t.ended = append(s.t.ended, e)
	s.t.mu.Unlock()
}

// Tracers registered in Config and with AddObserver each hear every
// request's outcome; on the memory store only fills are started.
func TestTracerOutcomes(t *testing.T) {
	first, second := &recTracer{spans: true}, &recTracer{}
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}, Observer: first, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.AddObserver(second)
	mw, err := c.Middleware("r")
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "x") }))
	for _, auth := range []string{"", "", "Bearer x"} {
		req := httptest.NewRequest("GET", "/a", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	for _, tr := range []*recTracer{first, second} {
		if len(tr.outcomes) != 3 {
			t.Fatalf("outcomes %+v, want 3", tr.outcomes)
		}
		miss, hit, bypass := tr.outcomes[0], tr.outcomes[1], tr.outcomes[2]
		if miss.Region != "r" || miss.Result != ResultMiss || !miss.Stored || miss.NotStored != "" || miss.Memoized {
			t.Errorf("miss: %+v", miss)
		}
		if hit.Result != ResultHit || hit.Age < 0 || hit.Coalesced {
			t.Errorf("hit: %+v", hit)
		}
		if bypass.Result != ResultBypass || bypass.Bypass != BypassAuthorization {
			t.Errorf("bypass: %+v", bypass)
		}
		if len(tr.started) != 1 || tr.started[0] != "fill" {
			t.Errorf("started %v, want one fill (no backend operation on memory)", tr.started)
		}
	}
	if len(first.ended) != 1 || !first.ended[0].Stored || first.ended[0].Err != nil {
		t.Errorf("fill span ended with %+v", first.ended)
	}
	if len(second.ended) != 0 {
		t.Errorf("a nil Span was ended: %+v", second.ended)
	}
}

// A Tracer that records nothing (its Start methods return nil spans, as
// a tracer whose request is not sampled) adds no allocation to a hit.
func TestTracerHitPathAllocs(t *testing.T) {
	if observerTestRace {
		t.Skip("allocation counts of pooled paths vary under -race (sync.Pool drops items at random)")
	}
	nop := &nopTracer{}
	without, with := hitPathAllocs(t, nil), hitPathAllocs(t, nop)
	if with != without {
		t.Fatalf("hit path allocations: %v with a Tracer, %v without", with, without)
	}
	if nop.outcomes == 0 {
		t.Fatal("the Tracer heard no outcome")
	}
}

// nopTracer counts outcomes and starts no span.
type nopTracer struct {
	NopObserver
	outcomes int
}

func (t *nopTracer) Outcome(context.Context, Outcome) { t.outcomes++ }

func (t *nopTracer) StartOp(ctx context.Context, _ string, _ BackendOp) (context.Context, Span) {
	return ctx, nil
}

func (t *nopTracer) StartFill(ctx context.Context, _ Fill) (context.Context, Span) { return ctx, nil }
