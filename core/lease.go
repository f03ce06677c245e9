package core

import (
	"context"
	"errors"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// leaseOutcome is how the cross-instance step of a fill ended.
type leaseOutcome int

const (
	leaseNone    leaseOutcome = iota // no lease (none used, or the store failed): fill anyway
	leaseHeld                        // this instance holds the lease: fill, then release
	leaseFound                       // a usable entry is there: use it
	leaseAwaited                     // another instance's fill stored a usable entry: use it
	leaseTimeout                     // LeaseWait passed (or the caller left) with the lease still held elsewhere
)

// lease runs the cross-instance step of a miss: take the key's lease, or
// wait for the instance holding it.
//
//   - With the lease taken, the entry is read again from the shared store:
//     another instance may have stored it and released the lease between
//     this request's lookup and its acquisition (leaseFound).
//   - Without it, the store is polled (entry, counters and lease in one
//     round trip): the holder's entry ends the wait (leaseAwaited); a
//     released lease with no usable entry (the holder's response was not
//     storable, it failed, or died) sends this request back to take the
//     lease and fill itself, at once rather than after LeaseWait.
//
// vals receives the counter values of each read (the snapshot the fill
// will carry: missing ones still need ensure). accept, if set, must also
// approve a found entry (a memoized value must decode). release is
// non-nil with leaseHeld.
func (r *Region) lease(ctx context.Context, rt *Route, skey, canonical string, names []string, vals []uint64, accept func(*backend.Entry) bool) (e *backend.Entry, release func(), out leaseOutcome) {
	l, ok := r.be.(backend.Leaser)
	if !ok || r.cfg.LeaseTTL <= 0 {
		return nil, nil, leaseNone
	}
	p, _ := r.be.(backend.LeasePoller)
	lkey := r.leaseKey(canonical)
	deadline := time.Now().Add(r.cfg.LeaseWait)
	usable := func(e *backend.Entry) bool {
		return r.classify(ctx, rt, e, canonical, names, vals, time.Now().UnixNano()) == fresh && (accept == nil || accept(e))
	}
	for {
		token, got, err := l.Acquire(ctx, lkey, r.cfg.LeaseTTL)
		if err != nil {
			r.opDone(ctx, "lease", err)
			return nil, nil, leaseNone
		}
		if got {
			release = func() {
				if rerr := l.Release(context.WithoutCancel(ctx), lkey, token); rerr != nil {
					r.opDone(ctx, "lease-release", rerr)
				}
			}
			if e, _, err := r.pollLease(ctx, p, skey, lkey, names, vals); err == nil && usable(e) {
				release()
				return e, nil, leaseFound
			}
			return nil, release, leaseHeld
		}
		e, released := r.awaitRemote(ctx, p, skey, lkey, names, vals, deadline, usable)
		switch {
		case e != nil:
			return e, nil, leaseAwaited
		case !released, !time.Now().Before(deadline):
			// LeaseWait bounds the whole wait, however often the lease
			// changed hands.
			return nil, nil, leaseTimeout
		}
	}
}

// awaitRemote polls for the entry another instance is filling, with a
// growing pause, until deadline. It returns the entry once usable, or
// released when the lease is gone without a usable entry.
func (r *Region) awaitRemote(ctx context.Context, p backend.LeasePoller, skey, lkey string, names []string, vals []uint64, deadline time.Time, usable func(*backend.Entry) bool) (e *backend.Entry, released bool) {
	pause := 2 * time.Millisecond
	for {
		t := time.NewTimer(min(pause, max(time.Until(deadline), 0)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
		e, held, err := r.pollLease(ctx, p, skey, lkey, names, vals)
		if err != nil {
			return nil, false
		}
		if usable(e) {
			return e, false
		}
		if !held {
			return nil, true
		}
		if !time.Now().Before(deadline) {
			return nil, false
		}
		pause = min(pause*2, 50*time.Millisecond)
	}
}

// pollLease is recheck through the store's poll: the entry (a corrupt one
// is a miss, counted once already), the counters and whether the lease is
// held. A store without poll reads through recheck and reports the lease
// held, so that only LeaseWait ends the wait.
func (r *Region) pollLease(ctx context.Context, p backend.LeasePoller, skey, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
	if p == nil {
		e, err := r.recheck(ctx, skey, names, vals)
		return e, true, err
	}
	o, t0 := r.obsStart()
	e, held, err := p.Poll(ctx, skey, lkey, names, vals)
	r.obsLatency(o, "get", t0)
	if errors.Is(err, backend.ErrCorrupt) {
		r.brk.done(nil)
		return nil, held, nil
	}
	r.opDone(ctx, "get", err)
	return e, held, err
}
