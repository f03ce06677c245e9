package core

import (
	"context"
	"sync"
	"time"
)

// fillCtx is the context a producer runs with for a fill or refresh: the
// caller's values without its cancellation (hidden: see parent), ended at
// the region's FillTimeout (context.DeadlineExceeded) or when the fill
// returns (context.Canceled), whichever comes first, and carrying the
// fill's tag set. It is what
//
//	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FillTimeout)
//	defer cancel()
//	ctx = context.WithValue(ctx, tagSetKey{}, ts)
//
// gives, in one allocation instead of eight, and with its timer started
// only when someone may wait on it (Done, or a context derived from it):
// a handler that never looks at its context's channel costs no timer. Err
// reads the clock while no timer runs, so a handler polling Err sees the
// deadline pass all the same.
type fillCtx struct {
	// parent is the caller's context, read for its values only (Value),
	// with its cancellation hidden (cancelCtxKey): what
	// context.WithoutCancel gives, without the allocation of one.
	parent context.Context
	start  time.Time // when the fill started (newFillCtx)
	// timeout is FillTimeout: the deadline is start plus timeout, told
	// by the monotonic clock (an addition of times costs more than the
	// subtraction judging it).
	timeout time.Duration
	tags    tagSet
	// rec is the recorder a request's fill writes to, allocated with its
	// flight (flight.rec), until the producer takes it (takeRecorder):
	// the context, which a handler may keep, does not hold on to it.
	rec *recorder

	mu     sync.Mutex
	err    error         // set once ended
	done   chan struct{} // made by the first Done
	timer  *time.Timer   // the deadline's, started with done or the first afterFunc
	afters []*fillAfter  // functions to run once ended (afterFunc)
}

// fillAfter is a function registered with fillCtx.AfterFunc, run once.
type fillAfter struct{ f func() }

// cancelCtxKey is the key package context's cancelable contexts answer
// Value with themselves for: context.Cause, and a context derived from a
// fill's looking for a cancelable parent, ask a context's Value for it.
// A fill's context must not answer with its caller's (whose cause Cause
// would then report, or whose cancellation a derived context would
// follow): it answers nil, as context.WithoutCancel's does. The key is
// unexported; it is found once by asking context.Cause about a context
// that records the key it is asked for (nil if Cause asks none: a
// fill's parent is then detached with context.WithoutCancel).
var cancelCtxKey = probeCancelCtxKey()

// keyProbe is an ended context recording the first key its Value is
// asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Err() error { return context.Canceled }

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}

// probeCancelCtxKey returns the key context.Cause asks an ended context's
// Value for: package context's cancelCtxKey.
func probeCancelCtxKey() any {
	p := &keyProbe{Context: context.Background()}
	_ = context.Cause(p)
	if _, ok := p.key.(*int); !ok {
		return nil // not the key (a pointer to an int) it is known to be
	}
	return p.key
}

// newFillCtx returns the context of a fill starting now on parent,
// detached from its cancellation, ending at FillTimeout. The caller ends
// it (end) when the fill returns.
func (r *Region) newFillCtx(parent context.Context) *fillCtx {
	if cancelCtxKey == nil {
		parent = context.WithoutCancel(parent)
	}
	now := time.Now()
	fc := &fillCtx{parent: parent, start: now, timeout: r.cfg.FillTimeout}
	fc.tags.r = r
	return fc
}

// fillStart is when the fill whose context is ctx started: its fillCtx's
// start, read from the clock for another context.
func fillStart(ctx context.Context) time.Time {
	if fc, ok := ctx.(*fillCtx); ok {
		return fc.start
	}
	return time.Now()
}

// takeRecorder returns the recorder ctx (a fill's) was given for its
// producer, once, or nil.
func takeRecorder(ctx context.Context) *recorder {
	fc, ok := ctx.(*fillCtx)
	if !ok {
		return nil
	}
	rw := fc.rec
	fc.rec = nil
	return rw
}

// Deadline returns the fill's deadline.
func (fc *fillCtx) Deadline() (time.Time, bool) { return fc.start.Add(fc.timeout), true }

// pastAt reports whether the deadline has come by now.
func (fc *fillCtx) pastAt(now time.Time) bool { return now.Sub(fc.start) >= fc.timeout }

// Done returns a channel closed when the fill ends or its deadline passes.
func (fc *fillCtx) Done() <-chan struct{} {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.done == nil {
		fc.done = make(chan struct{})
		if fc.err != nil {
			close(fc.done)
		} else {
			fc.startTimerLocked()
		}
	}
	return fc.done
}

// Err returns nil until the fill ends or its deadline passes, then
// context.Canceled or context.DeadlineExceeded.
func (fc *fillCtx) Err() error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.err == nil && fc.timer == nil && fc.pastAt(time.Now()) {
		// No timer to say it: the clock does.
		fc.endLocked(context.DeadlineExceeded)
	}
	return fc.err
}

// endedAt reports whether ctx ended: for a fill's context, by now (its
// deadline judged at now when no timer tells it: errAt), else ctx.Err.
func endedAt(ctx context.Context, now time.Time) bool {
	if fc, ok := ctx.(*fillCtx); ok {
		return fc.errAt(now) != nil
	}
	return ctx.Err() != nil
}

// errAt is Err with the clock read at now, by a caller that has read it
// already.
func (fc *fillCtx) errAt(now time.Time) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.err == nil && fc.timer == nil && fc.pastAt(now) {
		fc.endLocked(context.DeadlineExceeded)
	}
	return fc.err
}

// Value returns the fill's tag set for tagSetKey, nothing for
// cancelCtxKey (the parent's cancellation is not the fill's), else the
// parent's value.
func (fc *fillCtx) Value(key any) any {
	if _, ok := key.(tagSetKey); ok {
		return &fc.tags
	}
	if key == cancelCtxKey {
		return nil
	}
	return fc.parent.Value(key)
}

// String describes the context (fmt's %v).
func (fc *fillCtx) String() string { return "routecache.fillCtx" }

// AfterFunc runs f in its own goroutine once the context ends, unless
// stop is called first (stop then reports true). The context package
// uses it for the contexts derived from this one (context.WithCancel,
// WithTimeout, AfterFunc of a handler's), which would otherwise each
// start a goroutine to watch Done.
func (fc *fillCtx) AfterFunc(f func()) (stop func() bool) {
	a := &fillAfter{f: f}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.err != nil {
		go f()
		return func() bool { return false }
	}
	fc.afters = append(fc.afters, a)
	fc.startTimerLocked()
	return func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		for i, x := range fc.afters {
			if x == a {
				fc.afters = append(fc.afters[:i], fc.afters[i+1:]...)
				return true
			}
		}
		return false // ran, or is running
	}
}

// startTimerLocked starts the deadline's timer, once (fc.mu held, the
// context not ended).
func (fc *fillCtx) startTimerLocked() {
	if fc.timer != nil {
		return
	}
	d := fc.timeout - time.Since(fc.start)
	if d <= 0 {
		fc.endLocked(context.DeadlineExceeded)
		return
	}
	fc.timer = time.AfterFunc(d, func() {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.endLocked(context.DeadlineExceeded)
	})
}

// end ends the context when the fill returns (context.Canceled, unless
// its deadline ended it first) and stops its timer.
func (fc *fillCtx) end() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.endLocked(context.Canceled)
	if fc.timer != nil {
		fc.timer.Stop()
	}
}

// endLocked ends the context with err, once (fc.mu held).
func (fc *fillCtx) endLocked(err error) {
	if fc.err != nil {
		return
	}
	fc.err = err
	if fc.done != nil {
		close(fc.done)
	}
	for _, a := range fc.afters {
		go a.f()
	}
	fc.afters = nil
}
