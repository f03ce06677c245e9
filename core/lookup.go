package core

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/memory"
)

// lookup loads the call's entry and reads its counters into c.vals; a
// corrupt entry is a miss. A failure is counted, logged and reported to
// the breaker, unless the caller itself went away.
func (c *call) lookup() (*backend.Entry, error) { return c.read(true) }

// recheck is lookup for a second read of a key in the same call (a fill's
// re-check, polls for another instance's fill): a corrupt value the first
// read counted is not counted again.
func (c *call) recheck() (*backend.Entry, error) {
	if m, ok := c.r.be.(*memory.Backend); ok && c.r.c.obs.p.Load() == nil {
		// In process, with nothing to time or trace: look for the entry
		// first, and read it with its counters only if there is one (a
		// fill that just landed); a miss's re-check mostly finds none.
		// Counters read after the entry are no older than with it.
		if e, err := m.Load(c.ctx, c.skey, nil, nil); e == nil || err != nil {
			return nil, err
		}
	}
	return c.read(false)
}

func (c *call) read(countCorrupt bool) (*backend.Entry, error) {
	r := c.r
	if r.c.obs.p.Load() == nil {
		// No Observer, no Tracer: nothing to time or trace.
		e, err := r.be.Load(c.ctx, c.skey, c.names, c.vals)
		if err == nil {
			r.brk.succeeded()
			return e, nil
		}
		return c.readFailed(e, err, countCorrupt)
	}
	o, t0 := r.obsStart()
	ctx, sp := r.startOp(c.ctx, OpGet)
	e, err := r.be.Load(ctx, c.skey, c.names, c.vals)
	endOp(sp, err)
	r.obsLatency(o, "get", t0)
	if err == nil {
		r.brk.done(nil)
		return e, nil
	}
	return c.readFailed(e, err, countCorrupt)
}

// readFailed accounts for a failed read: a corrupt entry is a miss.
func (c *call) readFailed(e *backend.Entry, err error, countCorrupt bool) (*backend.Entry, error) {
	r := c.r
	if errors.Is(err, backend.ErrCorrupt) {
		if countCorrupt {
			r.record(evCorrupt)
		}
		r.brk.done(nil)
		return nil, nil
	}
	r.opDone(c.ctx, "get", err)
	return e, err
}

// opDone accounts for a backend operation's outcome.
func (r *Region) opDone(ctx context.Context, op BackendOp, err error) {
	if err != nil && ctx.Err() != nil {
		return // the caller went away: not the backend's fault
	}
	r.brk.done(err)
	if err != nil {
		r.recordError(op, err)
	}
}

// freshness is what an entry may be used for at a given time.
type freshness int

const (
	unusable  freshness = iota
	fresh               // serve it
	staleOK             // serve it and refresh (stale-while-revalidate)
	errorOnly           // serve it only if the handler fails (stale-if-error)
)

// classify decides what the entry read for c is good for at now, from
// its lifetimes and the counter values c read.
func (c *call) classify(e *backend.Entry, now int64) freshness {
	r := c.r
	if e == nil || e.Key != c.canonical || now >= e.StaleUntil && now >= e.FreshUntil || r.invalidationPending() {
		return unusable // (a pending invalidation may concern any entry: invalqueue.go)
	}
	swrUntil, staleUntil := e.SWRUntil, e.StaleUntil
	if swrUntil == 0 {
		// An entry of envelope version 1: its windows are the region's.
		swrUntil, staleUntil = e.FreshUntil+int64(r.cfg.Stale), e.FreshUntil+int64(r.cfg.StaleIfError)
	}
	var f freshness
	switch {
	case now < e.FreshUntil:
		f = fresh
	case now < swrUntil:
		f = staleOK
	case now < staleUntil:
		f = errorOnly
	default:
		return unusable
	}
	if !c.valid(e) {
		if r.cfg.SoftInvalidation && c.softValid(e) {
			if f == errorOnly {
				return errorOnly
			}
			return staleOK // softly invalidated: serve stale, refresh
		}
		return unusable
	}
	return f
}

// xfetch decides a probabilistic early refresh (Vattani, Chierichetti and
// Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB
// 2015): refresh when now - delta*beta*ln(rand) >= expiry, where delta is
// how long the last fill took. Hot keys refresh shortly before expiry,
// one request at a time, instead of all missing together.
func xfetch(e *backend.Entry, now int64, beta float64) bool {
	if e.FillNanos <= 0 {
		return false
	}
	gap := -float64(e.FillNanos) * beta * math.Log(1-rand.Float64())
	return float64(now)+gap >= float64(e.FreshUntil)
}

// valid reports whether no counter an entry depends on changed since its
// producer started.
func (c *call) valid(e *backend.Entry) bool {
	names, vals, rt := c.names, c.vals, c.rt
	// Stored by this very route under this key (classify compared the key
	// text): its counters are the ones named here, in the same order, then
	// its runtime tags' if it has any (runtimetags.go). A value read as 0
	// (a counter a remote store lost) is never valid.
	if rt != nil && e.Producer == rt && rt.namesFromKey && len(e.Counters) >= len(vals) {
		for i, c := range e.Counters[:len(vals)] {
			if v := vals[i]; v == 0 || c.Value != v {
				return false
			}
		}
		return len(e.Counters) == len(vals) || c.validRuntime(e.Counters[len(vals):])
	}
	for _, v := range vals {
		if v == 0 {
			return false
		}
	}
	// Fast path: the entry was stored by this route, same counters in order
	// (then maybe runtime tags').
	if len(e.Counters) >= len(names) {
		same := true
		for i, c := range e.Counters[:len(names)] {
			if c.Name != names[i] {
				same = false
				break
			}
			if c.Value != vals[i] {
				return false
			}
		}
		if same {
			return len(e.Counters) == len(names) || c.validRuntime(e.Counters[len(names):])
		}
	}
	return c.validShared(e)
}

// validShared is valid for an entry another route sharing the key
// stored. It must depend on every counter this route names (a tag only
// this route declares may have been invalidated: the entry's producer
// never read it), and on counters this route did not fetch, which are
// read now.
func (c *call) validShared(e *backend.Entry) bool {
	names, vals := c.names, c.vals
	for _, n := range names {
		if !hasCounter(e.Counters, n) {
			return false
		}
	}
	var extra []string
	for _, c := range e.Counters {
		found := false
		for i, n := range names {
			if n == c.Name {
				if vals[i] != c.Value {
					return false
				}
				found = true
				break
			}
		}
		if !found {
			extra = append(extra, c.Name)
		}
	}
	if len(extra) == 0 {
		return true
	}
	ev := make([]uint64, len(extra))
	ctx, sp := c.r.startOp(c.ctx, OpGetCounters)
	err := c.r.be.Counters(ctx, extra, ev)
	endOp(sp, err)
	if err != nil {
		c.r.recordError("get-counters", err)
		return false
	}
	for i, name := range extra {
		for _, c := range e.Counters {
			if c.Name == name && c.Value != ev[i] {
				return false
			}
		}
		if ev[i] == 0 {
			return false
		}
	}
	return true
}

// hasCounter reports whether cs holds a counter named name. Each of a
// request's names is looked up on its own: counting the entry's counters
// found among the names would let a counter the entry repeats (a tag
// declared twice, two placeholders of one value) stand for a name it
// lacks.
func hasCounter(cs []backend.CounterSnap, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

// validRuntime reports whether the counters of an entry's runtime tags,
// which the lookup did not read, still hold their snapshot values: one
// more read, into the call's pooled scratch.
func (c *call) validRuntime(snap []backend.CounterSnap) bool {
	names := c.xnames[:0]
	for _, s := range snap {
		names = append(names, s.Name)
	}
	vals := slices.Grow(c.xvals[:0], len(names))[:len(names)]
	c.xnames, c.xvals = names, vals
	if n := c.r.near; n != nil && n.ReadLocal(names, vals) {
		// The near cache's local copies, current as those its Load read
		// for the entry's other counters: no round trip.
	} else if err := c.r.be.Counters(c.ctx, names, vals); err != nil {
		c.r.opDone(c.ctx, OpGetCounters, err)
		return false
	}
	for i, s := range snap {
		if vals[i] != s.Value {
			return false
		}
	}
	return true
}

// softValid reports whether every counter of e that changed since its
// snapshot was changed by a soft bump that is still the latest one.
func (c *call) softValid(e *backend.Entry) bool {
	names, vals := c.names, c.vals
	sb, ok := c.r.be.(backend.SoftBumper)
	if !ok {
		return false
	}
	var idx []int
	var snap []uint64
	for i, n := range names {
		found := false
		for _, c := range e.Counters {
			if c.Name == n {
				found = true
				if c.Value != vals[i] {
					if vals[i] == 0 {
						return false
					}
					idx = append(idx, i)
					snap = append(snap, c.Value)
				}
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(e.Counters) != len(names) || len(idx) == 0 {
		return false
	}
	which := make([]string, len(idx))
	for j, i := range idx {
		which[j] = names[i]
	}
	marks := make([]backend.SoftMark, len(idx))
	if err := sb.SoftMarks(c.ctx, which, marks); err != nil {
		c.r.opDone(c.ctx, "soft-marks", err)
		return false
	}
	for j, i := range idx {
		if marks[j].Old != snap[j] || marks[j].New != vals[i] {
			return false
		}
	}
	return true
}
