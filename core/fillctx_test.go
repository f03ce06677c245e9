package core_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

type fillCtxKey struct{}

// A fill's handler runs with its request's values, detached from the
// request's cancellation, with a deadline FillTimeout from the fill's
// start; contexts derived from it (and context.AfterFunc) end when the
// fill returns.
func TestFillContextDetachedWithDeadline(t *testing.T) {
	const timeout = time.Hour
	rt := testRoute(t, core.RegionConfig{FillTimeout: timeout})
	reqCtx, cancelReq := context.WithCancel(context.WithValue(context.Background(), fillCtxKey{}, "v"))
	defer cancelReq()
	var (
		child        context.Context
		cancelChild  context.CancelFunc = func() {}
		afterRan                        = make(chan struct{})
		deadline     time.Time
		hasDeadline  bool
		errAfterStop error
		causeSeen    error
		value        any
		doneClosed   bool
	)
	t0 := time.Now()
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/items/1", nil).WithContext(reqCtx)
	_ = adapter.ServeRoute(rt, w, req, noParams, staleTestPattern, func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		cancelReq() // the client goes away: the fill goes on
		deadline, hasDeadline = ctx.Deadline()
		value = ctx.Value(fillCtxKey{})
		errAfterStop, causeSeen = ctx.Err(), context.Cause(ctx)
		select {
		case <-ctx.Done():
			doneClosed = true
		default:
		}
		child, cancelChild = context.WithCancel(ctx) // ended by the fill
		context.AfterFunc(ctx, func() { close(afterRan) })
		fmt.Fprint(w, "ok")
		return nil
	})
	t1 := time.Now()
	defer cancelChild()
	if xc(w) != "MISS" || w.Body.String() != "ok" {
		t.Fatalf("fill: %q %q", xc(w), w.Body.String())
	}
	if !hasDeadline || deadline.Before(t0.Add(timeout)) || deadline.After(t1.Add(timeout)) {
		t.Fatalf("deadline %v (%v), want FillTimeout after the fill's start (%v..%v)", deadline, hasDeadline, t0.Add(timeout), t1.Add(timeout))
	}
	if value != "v" {
		t.Fatalf("request value %v not seen by the handler", value)
	}
	if errAfterStop != nil || causeSeen != nil || doneClosed {
		t.Fatalf("the request's cancellation reached the fill: Err %v, Cause %v, Done closed %v", errAfterStop, causeSeen, doneClosed)
	}
	for what, ch := range map[string]<-chan struct{}{"derived context": child.Done(), "AfterFunc": afterRan} {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s not ended when the fill returned", what)
		}
	}
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("derived context: %v, want context.Canceled", child.Err())
	}
	if st := rt.Region().Stats(); st.Stores != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A handler that polls its context's Err, never asking for Done, sees
// FillTimeout pass (context.DeadlineExceeded), and what it then writes is
// not stored; one that waits on Done is released at FillTimeout.
func TestFillContextDeadlinePassesWithoutDone(t *testing.T) {
	for _, mode := range []string{"poll-err", "wait-done"} {
		t.Run(mode, func(t *testing.T) {
			rt := testRoute(t, core.RegionConfig{FillTimeout: 100 * time.Millisecond})
			var err error
			w := serveNext(rt, "GET", "/items/1", func(w http.ResponseWriter, r *http.Request) error {
				ctx := r.Context()
				if mode == "poll-err" {
					for ctx.Err() == nil {
						time.Sleep(time.Millisecond) // waits for the deadline, whenever it comes
					}
				} else {
					<-ctx.Done()
				}
				err = ctx.Err()
				fmt.Fprint(w, "late")
				return nil
			})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Err %v, want context.DeadlineExceeded", err)
			}
			if w.Body.String() != "late" {
				t.Fatalf("body %q", w.Body.String())
			}
			if st := rt.Region().Stats(); st.Stores != 0 || st.NotStored[core.NotStoredError] != 1 {
				t.Fatalf("a fill past FillTimeout: stats %+v", st)
			}
		})
	}
}

// A fill's context hides its request's cancellation from context.Cause
// too: a handler whose client went away with a cause, keeping its context
// (and one derived from it) past the fill, finds them ended by the fill
// (context.Canceled), never with the request's cause.
func TestFillContextHidesTheRequestsCause(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{FillTimeout: time.Hour})
	reqCtx, cancelReq := context.WithCancelCause(context.Background())
	defer cancelReq(nil)
	errGone := errors.New("client gone")
	var kept, child context.Context
	var cancelChild context.CancelFunc = func() {}
	var causeDuring error
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/items/1", nil).WithContext(reqCtx)
	_ = adapter.ServeRoute(rt, w, req, noParams, staleTestPattern, func(w http.ResponseWriter, r *http.Request) error {
		kept = r.Context()
		cancelReq(errGone)
		child, cancelChild = context.WithCancel(kept)
		causeDuring = context.Cause(child)
		fmt.Fprint(w, "ok")
		return nil
	})
	defer cancelChild()
	if xc(w) != "MISS" || w.Body.String() != "ok" {
		t.Fatalf("fill: %q %q", xc(w), w.Body.String())
	}
	if causeDuring != nil {
		t.Fatalf("a context derived during the fill has Cause %v, want none", causeDuring)
	}
	<-child.Done()
	for name, c := range map[string]context.Context{"fill's": kept, "derived": child} {
		if got := context.Cause(c); !errors.Is(got, context.Canceled) || errors.Is(got, errGone) {
			t.Fatalf("%s context: Cause %v, want context.Canceled (the fill's end)", name, got)
		}
	}
}
