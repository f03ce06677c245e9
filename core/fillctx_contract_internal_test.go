package core

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Contexts derived from a fillCtx (WithCancel, WithTimeout, AfterFunc)
// end when the fill ends, with its error as their Err and Cause; one
// derived after the end is born ended; concurrent Done, Err, Deadline,
// derivations and the end race with nothing (-race).
func TestFillCtxDerivedContextsFollowTheFill(t *testing.T) {
	r := &Region{}
	r.cfg.FillTimeout = time.Hour
	type k struct{}
	fc := r.newFillCtx(context.WithoutCancel(context.WithValue(context.Background(), k{}, "v")))
	child, cancelChild := context.WithCancel(fc)
	defer cancelChild()
	timed, cancelTimed := context.WithTimeout(fc, 2*time.Hour)
	defer cancelTimed()
	if dl, _ := timed.Deadline(); !dl.Equal(fc.start.Add(fc.timeout)) {
		t.Fatalf("derived deadline %v, want the fill's %v", dl, fc.start.Add(fc.timeout))
	}
	if child.Value(k{}) != "v" || tagSetOf(child) != &fc.tags {
		t.Fatal("a derived context lost the caller's value or the tag set")
	}
	if context.Cause(fc) != nil || context.Cause(child) != nil {
		t.Fatal("Cause before the end")
	}
	ran := make(chan struct{})
	context.AfterFunc(fc, func() { close(ran) })
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithCancel(fc)
			defer cancel()
			_ = fc.Err()
			_, _ = fc.Deadline()
			<-c.Done()
			if !errors.Is(c.Err(), context.Canceled) {
				t.Errorf("child Err %v", c.Err())
			}
		}()
	}
	fc.end()
	wg.Wait()
	<-ran
	for _, c := range []context.Context{child, timed} {
		<-c.Done()
		if !errors.Is(c.Err(), context.Canceled) || !errors.Is(context.Cause(c), context.Canceled) {
			t.Fatalf("derived Err %v Cause %v, want context.Canceled", c.Err(), context.Cause(c))
		}
	}
	if !errors.Is(context.Cause(fc), context.Canceled) {
		t.Fatalf("Cause %v", context.Cause(fc))
	}
	late, cancelLate := context.WithCancel(fc)
	defer cancelLate()
	select {
	case <-late.Done():
	default:
		t.Fatal("a context derived after the end is not done")
	}
}

// A child cancelled on its own leaves the fill's context running, and its
// registration is removed (no leftover AfterFunc).
func TestFillCtxChildCancelLeavesFillRunning(t *testing.T) {
	r := &Region{}
	r.cfg.FillTimeout = time.Hour
	fc := r.newFillCtx(context.WithoutCancel(context.Background()))
	for i := 0; i < 100; i++ {
		c, cancel := context.WithCancel(fc)
		cancel()
		<-c.Done()
	}
	if fc.Err() != nil {
		t.Fatalf("Err %v", fc.Err())
	}
	fc.mu.Lock()
	n := len(fc.afters)
	fc.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d AfterFuncs left registered by cancelled children", n)
	}
	fc.end()
}
