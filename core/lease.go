package core

import (
	"context"
	"errors"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/internal/testhook"
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
//     this call's lookup and its acquisition (leaseFound).
//   - Without it, the store is polled (entry, counters and lease in one
//     round trip): the holder's entry ends the wait (leaseAwaited); a
//     released lease with no usable entry (the holder's response was not
//     storable, it failed, or died) sends this call back to take the
//     lease and fill itself, at once rather than after LeaseWait.
//
// c.vals receives the counter values of each read (the snapshot the fill
// will carry: missing ones still need ensure). A found entry must also be
// accepted by the front (a memoized value must decode). release is
// non-nil with leaseHeld.
func (c *call) lease() (e *backend.Entry, release func(), out leaseOutcome) {
	r := c.r
	if !c.leasing() {
		return nil, nil, leaseNone
	}
	p, _ := r.be.(backend.LeasePoller)
	lkey := r.leaseKey(c.canonical)
	deadline := time.Now().Add(r.cfg.LeaseWait)
	for {
		release, got := c.acquireLease()
		switch {
		case release == nil && !got:
			// The store failed (counted): fill anyway.
			return nil, nil, leaseNone
		case got:
			if e, _, err := c.pollLease(p, lkey); err == nil && c.usable(e) {
				release()
				return e, nil, leaseFound
			}
			return nil, release, leaseHeld
		}
		e, released := c.awaitRemote(p, lkey, deadline)
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

// acquireLease tries once to take the key's lease for LeaseTTL. got
// reports whether it was taken, and release gives it back then; a store
// failure is counted and returns neither, another holder returns a no-op
// release.
func (c *call) acquireLease() (release func(), got bool) {
	r := c.r
	l := r.be.(backend.Leaser)
	lkey := r.leaseKey(c.canonical)
	actx, sp := r.startOp(c.ctx, OpLease)
	token, got, err := l.Acquire(actx, lkey, r.cfg.LeaseTTL)
	endOp(sp, err)
	switch {
	case err != nil:
		r.opDone(c.ctx, "lease", err)
		return nil, false
	case !got:
		return func() {}, false
	}
	return func() {
		rctx, sp := r.startOp(context.WithoutCancel(c.ctx), OpLeaseRelease)
		rerr := l.Release(rctx, lkey, token)
		endOp(sp, rerr)
		if rerr != nil {
			r.opDone(c.ctx, "lease-release", rerr)
		}
	}, true
}

// usable reports whether an entry read during a lease may end the fill.
func (c *call) usable(e *backend.Entry) bool {
	return c.classify(e, time.Now().UnixNano()) == fresh && c.accepts(e)
}

// awaitRemote polls for the entry another instance is filling, with a
// growing pause, until deadline. It returns the entry once usable, or
// released when the lease is gone without a usable entry.
func (c *call) awaitRemote(p backend.LeasePoller, lkey string, deadline time.Time) (e *backend.Entry, released bool) {
	if testhook.Enter(testhook.Lease) {
		defer testhook.Leave(testhook.Lease)
	}
	pause := 2 * time.Millisecond
	for {
		t := time.NewTimer(min(pause, max(time.Until(deadline), 0)))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
		e, held, err := c.pollLease(p, lkey)
		if err != nil {
			return nil, false
		}
		if c.usable(e) {
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
func (c *call) pollLease(p backend.LeasePoller, lkey string) (*backend.Entry, bool, error) {
	if p == nil {
		e, err := c.recheck()
		return e, true, err
	}
	r := c.r
	o, t0 := r.obsStart()
	ctx, sp := r.startOp(c.ctx, OpLeasePoll)
	e, held, err := p.Poll(ctx, c.skey, lkey, c.names, c.vals)
	endOp(sp, err)
	r.obsLatency(o, "get", t0)
	if errors.Is(err, backend.ErrCorrupt) {
		r.brk.done(nil)
		return nil, held, nil
	}
	r.opDone(c.ctx, "get", err)
	return e, held, err
}
