package core

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// fillCtx's AfterFunc: stop before the end keeps f from running (and
// reports it); a function registered after the end runs at once; Done
// asked after the end is closed.
func TestFillCtxAfterFuncAndEnd(t *testing.T) {
	r := &Region{}
	r.cfg.FillTimeout = time.Hour
	fc := r.newFillCtx(context.WithoutCancel(context.Background()))
	stopped := fc.AfterFunc(func() { t.Error("a stopped AfterFunc ran") })
	ran := make(chan struct{})
	fc.AfterFunc(func() { close(ran) })
	if !stopped() || stopped() {
		t.Fatal("stop: want true once, then false")
	}
	if fc.Err() != nil {
		t.Fatalf("Err %v before the end", fc.Err())
	}
	fc.end()
	<-ran
	<-fc.Done()
	if !errors.Is(fc.Err(), context.Canceled) {
		t.Fatalf("Err %v after the end, want context.Canceled", fc.Err())
	}
	late := make(chan struct{})
	if fc.AfterFunc(func() { close(late) })() {
		t.Fatal("stop of a function registered after the end reported true")
	}
	<-late
	if tags := fc.Value(tagSetKey{}); tags != &fc.tags {
		t.Fatalf("tag set %v, want the fill's", tags)
	}
}

// Past its deadline a fillCtx whose Done was never asked reports
// DeadlineExceeded, and its Done is then closed; one ended by the deadline
// stays so when the fill returns.
func TestFillCtxDeadlineWithoutTimer(t *testing.T) {
	r := &Region{}
	r.cfg.FillTimeout = time.Millisecond
	fc := r.newFillCtx(context.WithoutCancel(context.Background()))
	for fc.Err() == nil {
		time.Sleep(time.Millisecond) // until the deadline, whenever the clock says so
	}
	if !errors.Is(fc.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v, want context.DeadlineExceeded", fc.Err())
	}
	<-fc.Done()
	fc.end()
	if !errors.Is(fc.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v after the end, want context.DeadlineExceeded still", fc.Err())
	}
}

// A request's fill writes to the recorder allocated with its flight,
// handed over once: the context the handler may keep holds no recorder
// once the handler runs, and every fill has a recorder of its own.
func TestFillRecorderIsTheFlightsAndNotKeptByTheContext(t *testing.T) {
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mw, err := c.Middleware("r")
	if err != nil {
		t.Fatal(err)
	}
	var ctxs []context.Context
	var writers []http.ResponseWriter
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctxs, writers = append(ctxs, r.Context()), append(writers, w)
		_, _ = w.Write([]byte("x"))
	}))
	for _, path := range []string{"/a", "/b"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if len(ctxs) != 2 {
		t.Fatalf("%d fills, want 2", len(ctxs))
	}
	for i, ctx := range ctxs {
		fc, ok := ctx.(*fillCtx)
		if !ok {
			t.Fatalf("fill %d: context %T, want *fillCtx", i, ctx)
		}
		if fc.rec != nil {
			t.Fatalf("fill %d: the context still holds the recorder", i)
		}
	}
	if writers[0] == writers[1] {
		t.Fatal("two fills wrote to one recorder")
	}
}

// The probe finds package context's key: a cancelable context answers it
// with itself. (Without it, every fill pays context.WithoutCancel.)
func TestCancelCtxKeyIsContexts(t *testing.T) {
	if cancelCtxKey == nil {
		t.Fatal("cancelCtxKey not found: fills fall back to context.WithoutCancel")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if got := ctx.Value(cancelCtxKey); got != ctx {
		t.Fatalf("a cancelable context answers the key with %v, want itself", got)
	}
}

// A fillCtx's deadline is its start plus FillTimeout: Deadline says so,
// and with no timer running it has not passed a nanosecond before and
// has at it (errAt, as Err judges it at the clock's now).
func TestFillCtxDeadlineIsStartPlusTimeout(t *testing.T) {
	r := &Region{}
	r.cfg.FillTimeout = time.Hour
	fc := r.newFillCtx(context.Background())
	if dl, ok := fc.Deadline(); !ok || !dl.Equal(fc.start.Add(time.Hour)) {
		t.Fatalf("Deadline %v %v, want %v", dl, ok, fc.start.Add(time.Hour))
	}
	if err := fc.errAt(fc.start.Add(time.Hour - 1)); err != nil {
		t.Fatalf("a nanosecond before the deadline: %v", err)
	}
	if err := fc.errAt(fc.start.Add(time.Hour)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("at the deadline: %v, want context.DeadlineExceeded", err)
	}
	fc2 := r.newFillCtx(context.Background())
	fc2.start = fc2.start.Add(-time.Hour) // started an hour ago: past its deadline
	if err := fc2.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err past the deadline: %v", err)
	}
}
