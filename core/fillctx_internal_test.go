package core

import (
	"context"
	"errors"
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
