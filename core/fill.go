package core

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/memory"
)

// fill leads a key's flight: it takes the entry another fill (here or on
// another instance) stored meanwhile, or runs the producer and stores its
// result, leaving the outcome in f for every caller (the leader answers
// from it too, in await).
func (c *call) fill(f *flight, next nextFunc) {
	r := c.r
	c.own(f)
	defer c.landOwned(f)
	e, release := c.claim()
	if release != nil {
		defer release()
	}
	if e != nil {
		f.e, f.snap = e, e.Counters
		return
	}
	if !c.ensure() {
		c.recordBypass(BypassBackend)
		f.bypassed = true
		return
	}
	r.record(evMiss)
	c.produce(f, false, next)
}

// ensure reads, before the producer runs, the counters the entry will
// carry (an invalidation while it runs makes it unusable), creating
// those a remote store lacks, and the tag epoch, outside the entry's
// snapshot (runtimetags.go), after them. It reports false when the store
// failed.
//
// The memory store's counters are never missing, and the lookup read
// them just now: only the epoch is read. One moved since the lookup
// leaves the entry with its value before the move: stored but never
// served, nor handed to waiters (the check after storing), as if the
// move had come while the producer ran.
func (c *call) ensure() bool {
	r := c.r
	if m := r.mem; m != nil {
		c.epoch, c.epochOK = m.Counter(r.epochCounter), true
		return true
	}
	n := len(c.names)
	names, vals := c.scratch(n + 1)
	copy(names, c.names)
	copy(vals, c.vals)
	names[n], vals[n] = r.epochCounter, 0
	ectx, sp := r.startOp(c.ctx, OpEnsureCounters)
	err := r.be.Ensure(ectx, names, vals)
	endOp(sp, err)
	if err != nil {
		r.opDone(c.ctx, "ensure-counters", err)
		return false
	}
	copy(c.vals, vals)
	c.epoch, c.epochOK = vals[n], true
	return true
}

// own gives the call, leading flight f, strings of its own where they
// may view the request's pooled state, since the flight and the entry
// outlive it: the storage key is the flight's copy; the canonical key and
// the counter names (for snapshot) are copied in one allocation, or, when
// the storage key is the canonical key, are the flight's copy and the
// names it made with it (ownTail).
func (c *call) own(f *flight) {
	if f.tail != "" && c.canonical == f.key && len(f.tail) == textLen(c.names) {
		// The key is the canonical key, and the flight's copy of it was
		// made with the names after it (ownTail): nothing more to copy.
		c.skey, c.canonical, c.namesText, c.namesOwned = f.key, f.key, f.tail, c.names
		return
	}
	c.skey = f.key
	n := len(c.canonical)
	for _, s := range c.names {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(c.canonical)
	for _, s := range c.names {
		b.WriteString(s)
	}
	all := b.String()
	c.canonical, c.namesText = all[:len(c.canonical)], all[len(c.canonical):]
	c.namesOwned = c.names
}

// ownTail is what a call about to lead a flight has copied after the
// flight's key (flightGroup.joinWith) for own: its counter names, when
// its storage key is its canonical key (an unhashed key), so that the
// key, the canonical key and the names take one allocation; else nil.
func (c *call) ownTail() []string {
	if len(c.skey) != len(c.canonical) || unsafe.StringData(c.skey) != unsafe.StringData(c.canonical) {
		return nil
	}
	return c.names
}

// textLen is the length of the strings joined.
func textLen(ss []string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	return n
}

// landOwned lands the flight f that the call, having owned its strings
// (own), led; the names own copied are no longer trusted (sameSlice).
func (c *call) landOwned(f *flight) {
	c.namesOwned = nil
	c.r.flights.land(c.skey, f)
}

// concat is a fresh copy of the strings joined, in one allocation (the
// + operator and strings.Join return a lone non-empty string as it is).
func concat(ss ...string) string {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range ss {
		b.WriteString(s)
	}
	return b.String()
}

// claim looks for an entry stored since the call's lookup: across
// instances through the key's lease (taking it, or waiting for the
// instance holding it: release is then non-nil, to call once the fill is
// stored), else by reading the key again inside the flight (a fill that
// just landed may have stored it).
func (c *call) claim() (e *backend.Entry, release func()) {
	r := c.r
	if c.leasing() {
		e, release, out := c.lease()
		switch out {
		case leaseAwaited:
			r.record(evCoalesced) // filled by another instance
		case leaseTimeout:
			r.record(evLeaseTimeout)
		}
		return e, release
	}
	if e, err := c.recheck(); err == nil && e != nil && c.classify(e, time.Now().UnixNano()) == fresh && c.accepts(e) {
		return e, nil
	}
	return nil, nil
}

// leasing reports whether fills of c's region are coordinated across
// instances by a lease.
func (c *call) leasing() bool {
	_, ok := c.r.be.(backend.Leaser)
	return ok && c.r.cfg.LeaseTTL > 0
}

// produce runs the producer on a context detached from the caller's
// (bounded by FillTimeout), stores what it produced, and leaves the
// outcome in f.
func (c *call) produce(f *flight, refresh bool, next nextFunc) {
	r := c.r
	fctx, sp := c.startFill(refresh)
	var p produced
	defer c.endFill(sp, refresh, &p)
	// The producer's context: detached, bounded by FillTimeout, with the
	// fill's tag set (fillCtx).
	ctx := r.newFillCtx(fctx)
	defer ctx.end()
	if c.route != nil && !refresh && !f.ran {
		ctx.rec = &f.rec // a request's recorder, allocated with its flight (zero: unused yet)
	}
	tags := &ctx.tags
	p = c.runProducer(ctx, refresh, next)
	c.addRuntimeTags(ctx, tags, &p)
	f.ran, f.val, f.err, f.panicked, f.failed, f.fail, f.snap = true, p.val, p.err, p.panicked, p.failed, p.fail, p.snap
	if p.store == nil && p.share == nil {
		return
	}
	// The memory backend's Store and Counters never wait (nor read their
	// context): no timer for them, and the fill's context, detached from
	// the caller's cancellation, will do. Another store's are bounded by
	// FillTimeout, detached from the caller's cancellation and from the
	// end of the fill's context.
	var storeCtx context.Context = ctx
	if _, inProcess := r.be.(*memory.Backend); !inProcess {
		var cancelStore context.CancelFunc
		storeCtx, cancelStore = context.WithTimeout(context.WithoutCancel(fctx), r.cfg.FillTimeout)
		defer cancelStore()
	}
	skey := c.skey
	if p.skey != "" {
		skey = p.skey // the key of the response's coding (compress.go)
	}
	var held *memory.Held
	if p.store != nil {
		p.reason, held = r.storeEntry(storeCtx, skey, p.store)
	}
	if p.store != nil && p.reason == "" && p.share == nil && c.storedUnchanged(storeCtx, p.snap, held) {
		// Hand the entry to waiters only if no invalidation landed meanwhile.
		f.e = p.store
	}
	if p.share != nil {
		f.e = p.share
		if len(p.snap) > len(c.names) && !c.unchanged(storeCtx, p.snap) {
			// A runtime tag (which waiters did not read) moved: they look
			// up again.
			f.e, f.snap = nil, nil
		}
	}
}

// unchanged reports whether the counters of snap, the snapshot of what the
// call produced, still hold their values: the call's own, read before its
// producer ran, and its runtime tags'.
func (c *call) unchanged(ctx context.Context, snap []backend.CounterSnap) bool {
	names, want := c.names, c.vals
	if len(snap) > len(c.names) {
		names, want = make([]string, len(snap)), make([]uint64, len(snap))
		for i, s := range snap {
			names[i], want[i] = s.Name, s.Value
		}
	}
	_, now := c.scratch(len(names))
	ctx, sp := c.r.startOp(ctx, OpGetCounters)
	err := c.r.be.Counters(ctx, names, now)
	endOp(sp, err)
	if err != nil {
		return false
	}
	for i := range now {
		if now[i] != want[i] {
			return false
		}
	}
	return true
}

// storedUnchanged is unchanged for the entry just stored, whose snapshot
// is snap: on the memory store, what the store holds for it (held, the
// entry's Held, its snapshot snap itself) answers, reading the counters
// now as a hit would (memory.Backend.HeldUnchanged: while no counter was
// created since the store, those of the snapshot that existed then, with
// no name hashed; else every name looked up). Else (held nil) unchanged
// reads them from the store.
func (c *call) storedUnchanged(ctx context.Context, snap []backend.CounterSnap, held *memory.Held) bool {
	if held != nil {
		if cs := held.Entry().Counters; len(cs) == len(snap) && unsafe.SliceData(cs) == unsafe.SliceData(snap) {
			return c.r.mem.HeldUnchanged(held)
		}
	}
	return c.unchanged(ctx, snap)
}

// scratch returns the call's scratch slices (xnames, xvals) with length n,
// grown if need be and kept with the call: for backend reads whose names
// and values are not kept.
func (c *call) scratch(n int) ([]string, []uint64) {
	c.xnames = slices.Grow(c.xnames[:0], n)[:n]
	c.xvals = slices.Grow(c.xvals[:0], n)[:n]
	return c.xnames, c.xvals
}

// snapshot is the counter snapshot an entry produced now will carry.
func (c *call) snapshot() []backend.CounterSnap { return c.snapshotIn(nil) }

// snapshotIn is snapshot, made in buf (capped to its length) when it has
// room enough.
func (c *call) snapshotIn(buf []backend.CounterSnap) []backend.CounterSnap {
	var snap []backend.CounterSnap
	if n := len(c.names); n <= cap(buf) {
		snap = buf[:n:n]
	} else {
		snap = make([]backend.CounterSnap, n)
	}
	// The names outlive the request's pooled state: one copy of them all
	// (made by own), sliced.
	all := c.namesText
	if !sameSlice(c.namesOwned, c.names) && !joins(all, c.names) {
		all = concat(c.names...)
	}
	for i, n := range c.names {
		snap[i] = backend.CounterSnap{Name: all[:len(n)], Value: c.vals[i]}
		all = all[len(n):]
	}
	return snap
}

// sameSlice reports whether a and b are the same slice (array and
// length): the names own copied, unchanged since (nothing writes a call's
// names while it runs), whose text need not be compared again. own sets
// namesOwned, and landOwned clears it when the fill lands: a pooled
// call's later request never trusts a text copied for an earlier one.
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && len(a) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// joins reports whether s is the names concatenated.
func joins(s string, names []string) bool {
	for _, n := range names {
		if len(s) < len(n) || s[:len(n)] != n {
			return false
		}
		s = s[len(n):]
	}
	return s == ""
}

// refresh recomputes an entry after its (stale or early-expiring) copy
// was served: at most one refresh (or fill) per key runs in this process,
// and at most MaxRefreshes per region; one across instances, whoever holds
// the key's lease. A refresh that cannot start is skipped. A route
// refreshes on the request's goroutine (Gin and Echo recycle their
// contexts once a request returns, so it cannot move to another), after
// its response was flushed; a memoized value in the background.
func (c *call) refresh(next nextFunc) {
	r := c.r
	// Join first: a call finding the key already being filled or
	// refreshed has nothing to do, and must not count as skipped for
	// MaxRefreshes, which bounds refreshes of distinct keys.
	f, leader := r.flights.joinWith(c.skey, c.abandonAfter, c.ownTail())
	if !leader {
		return
	}
	select {
	case r.refreshSem <- struct{}{}:
	default:
		r.record(evRefreshSkipped)
		r.flights.land(c.skey, f)
		return
	}
	if !c.detached() {
		c.refill(f, next)
		return
	}
	if d := c.detach(); !r.c.bg.run(func() { d.refill(f, nil) }) {
		<-r.refreshSem // the Cache is closing
		r.flights.land(c.skey, f)
	}
}

// refill is the body of a refresh holding a refreshSem slot.
func (c *call) refill(f *flight, next nextFunc) {
	r := c.r
	defer func() { <-r.refreshSem }()
	c.own(f)
	defer c.landOwned(f)
	if c.leasing() {
		release, got := c.acquireLease()
		if !got {
			return // another instance refreshes it (or the store failed)
		}
		defer release()
	}
	r.record(evRefresh)
	c.readEpoch(context.WithoutCancel(c.ctx))
	c.produce(f, true, next)
	if f.err != nil {
		r.c.log.Warn("routecache: background refresh failed", "region", r.name, "key", c.canonical, "err", f.err)
	}
}

// newEntry builds the entry of a response (or memoized value) whose
// producer started at start, with the counter snapshot read before it ran
// and its lifetime.
func (r *Region) newEntry(status int, header http.Header, body []byte, canonical string, snap []backend.CounterSnap, start time.Time, l lifetime) *backend.Entry {
	e := new(backend.Entry)
	r.initEntry(e, status, header, body, canonical, snap, start, time.Since(start), l)
	return e
}

// initEntry is newEntry building the entry in e (new, zero), its
// producer having taken took.
func (r *Region) initEntry(e *backend.Entry, status int, header http.Header, body []byte, canonical string, snap []backend.CounterSnap, start time.Time, took time.Duration, l lifetime) {
	e.Status, e.Header, e.Body = status, header, body
	e.Created, e.FillNanos = start.UnixNano(), int64(took)
	e.Key, e.Counters = canonical, snap
	l.apply(e)
}

// entryAlloc is a fill's entry allocated together with room for what its
// slices usually hold: the counter snapshot, the recorded header values
// (the recorder's snapshot, which becomes the entry's headers in place),
// the replayed list (Prepare), the validators the cache adds and the
// strong ETag's text. Building an entry then takes one allocation, not
// six. Everything in it belongs to that one entry (and, until the entry
// is built, to the recorder's snapshot that becomes its headers): it is
// written before the entry is stored, never after, and never pooled or
// reused. A response that is not stored leaves it to the collector.
//
// Its arrays are sized for a small response (two header values, three
// replayed headers besides Content-Length, four counters) so that the
// whole (with the allocator's header for an object of its size) takes
// the 640-byte size class: what the separate allocations took together.
// A response with more headers or counters has those slices allocated
// apart, as they were.
type entryAlloc struct {
	e        backend.Entry
	counters [4]backend.CounterSnap
	values   [2]string
	replayed [4]backend.HeaderValues
	added    [2]string
	etag     [strongETagMax]byte
}

// storeEntry writes e for its kept lifetime (until StaleUntil) and accounts for the outcome:
// a refusal is counted as a not-stored reason, a failure also as a backend
// error. It returns why the entry was not stored, "" once stored; and, on
// the memory store, what it holds for e (for the check after storing:
// call.storedUnchanged), else nil.
func (r *Region) storeEntry(ctx context.Context, skey string, e *backend.Entry) (_ NotStoredReason, held *memory.Held) {
	o, t0 := r.obsStart()
	sctx, sp := r.startOp(ctx, OpSet)
	var err error
	if r.mem != nil {
		held, err = r.mem.StoreHeld(skey, e) // Store, but for what it returns
	} else {
		err = r.be.Store(sctx, skey, e, time.Duration(e.StaleUntil-e.Created))
	}
	endOp(sp, err)
	r.obsLatency(o, "set", t0)
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrTooLarge):
		r.recordNotStored(NotStoredTooLarge)
		return NotStoredTooLarge, nil
	case errors.Is(err, backend.ErrDropped):
		r.recordNotStored(NotStoredDropped)
		return NotStoredDropped, nil
	default:
		r.opDone(ctx, "set", err)
		r.recordNotStored(NotStoredBackend)
		return NotStoredBackend, nil
	}
	r.recordStore(len(e.Body))
	return "", held
}

// produced is the outcome of one run of a producer.
type produced struct {
	// store is the entry to store (nil: not storable; the reason is
	// counted). share, if set, is handed to the flight's callers whether
	// or not it was stored (a memoized value: they check its snapshot).
	store, share *backend.Entry
	skey         string                // where store goes, when not the call's key
	snap         []backend.CounterSnap // the snapshot it was computed under
	val          any                   // the memoized function's value
	failed       bool                  // 5xx, error, panic or timeout
	err          error                 // the producer's error
	panicked     any                   // a recovered panic value, to re-raise
	fail         *failure              // what a route's waiters answer for a failure
	reason       NotStoredReason       // why it was not stored (counted), for the Tracers
}

// panicFailure is what the waiters of a fill whose handler panicked
// answer: the panic itself goes on to the leader's framework.
var panicFailure = plainFailure(http.StatusInternalServerError, detailSharedFailure)

// produce runs the route's handler into a recorder, on ctx. A leader's
// response streams to the client as it is recorded, unless it holds a
// stale-if-error fallback: then it is held back, so that a failure (5xx,
// error, panic) can be replaced by the stale entry (a response too large
// to hold starts streaming and loses that protection). A refresh's
// response goes nowhere, after the client's was flushed. A panic is
// recovered and re-raised by settle (outOwn), after the waiters were
// released.
func (rf *routeFront) produce(c *call, ctx context.Context, refresh bool, next nextFunc) (p produced) {
	r := c.r
	tags := tagSetOf(ctx)
	c.rtags = tags // the CDN's Surrogate-Key lists them too (cdn.go)
	rw := rf.newRecorder(c, tags, refresh, ctx)
	start := fillStart(ctx) // one clock read for the context and the entry
	rf.runHandler(c, ctx, rw, refresh, next, &p)
	if p.panicked != nil {
		// A fill whose response already started streaming (too large to
		// hold back) re-raises it, or the client would take a truncated
		// body for a complete one.
		return p
	}
	skip := errors.Is(p.err, errSkipStore)
	if skip {
		p.err = nil
	}
	if p.err == nil && !skip {
		// A skipped response left uncommitted is the framework's to finish
		// (Gin renders c.Errors in an outer middleware): committing a 200
		// here would preempt it.
		rw.finish()
	}
	// Whether the fill outlived FillTimeout (or the context ended) by the
	// time its handler returned: asked once, at the time the entry's
	// FillNanos is taken from.
	done := time.Now()
	ended := endedAt(ctx, done)
	p.failed = p.err != nil || rw.status >= 500 || ended
	if rw.hold && rw.commit {
		rw.settleHeld(tags, p.failed)
	}
	rw.judgeLateDue() // a response without a body: as its status went out
	if p.failed {
		p.fail = sharedFailure(rw, ended)
	}
	// The headers were judged as they went out (setMiss), unless the
	// response was held (its snapshot retaken since) or is a refresh's.
	v := rw.verdict
	sent := rw.snapshot
	if !v.judged {
		v, sent = r.judge(c.rt, rw.status, rw.before, rw.snapshot)
	} else if !v.canonical {
		sent = canonicalHeader(rw.snapshot)
	}
	before := v.before
	// Which headers the snapshot holds, where it tells (canonical keys).
	keys := rw.snapKeys
	if !v.canonical {
		keys |= snapAll
	}
	reason := rw.refusal(p.err != nil || skip, ended)
	keyed := false // keyed on the request's content coding (compress.go)
	if reason == "" {
		// encodingReason has nothing to say of a response without Vary.
		if reason = v.reason; reason == "" && keys&snapVary != 0 {
			reason, keyed = r.encodingReason(rf.req, before, sent)
		}
	}
	life := v.life
	if reason == "" && !v.fresh {
		reason = NotStoredCacheControl // max-age=0 with UseCacheControl
	}
	if reason != "" {
		p.notStored(r, reason)
		return p
	}
	ea := rw.alloc()
	p.snap = c.snapshotIn(ea.counters[:0])
	// The snapshot is the recorder's own copy, not used after this: the
	// entry's headers are made of it in place. A clean snapshot
	// (snapshotHeader) of canonical headers, with none set before the cache
	// ran, has nothing to remove.
	stored := sent
	asTaken := rw.snapClean && v.canonical && len(before) == 0
	if !asTaken {
		stored = keepStored(before, sent)
	}
	e := &ea.e
	r.initEntry(e, rw.status, stored, rw.body, c.canonical, p.snap, start, done.Sub(start), life)
	if r.cfg.CDNHeaders {
		c.setCDNHeaders(e.Header, life) // a refresh's response was not committed with them
	}
	e.Producer = c.rt
	etag, lm := addValidatorsIn(e, start, ea, keys)
	p.skey = c.encodeEntry(e, rf.req, keyed)
	rf.prepare(e, ea, rw.listed && asTaken && !r.cfg.CDNHeaders && !r.cfg.Compress, keys, etag, lm)
	p.store = e
	return p
}

// prepare lists a fill's entry's headers for its hits (its Replayed, in
// ea) and sums their share of its MemSize. When its headers are the
// snapshot setMiss listed (listed), with nothing added since but the
// validators addValidatorsIn added under names the snapshot did not hold
// (etag, lm: their values, nil if not added), the list is setMiss's with
// those: no walk of the map (backend.Entry.PrepareListed). Else Prepare
// walks it.
func (rf *routeFront) prepare(e *backend.Entry, ea *entryAlloc, listed bool, keys snapKeys, etag, lm []string) {
	rw := rf.rw
	if !listed || etag != nil && keys&snapEtag != 0 || lm != nil && keys&snapLastModified != 0 {
		// A validator replaced a header (without a value) the snapshot
		// listed, or the headers are not the snapshot as listed.
		e.Replayed = ea.replayed[:0] // Prepare lists them in it
		e.Prepare()
		return
	}
	rp, mem := rw.list, rw.listMem
	if etag != nil {
		rp, mem = append(rp, backend.HeaderValues{Name: "Etag", Values: etag}), mem+backend.HeaderMem("Etag", etag)
	}
	if lm != nil {
		rp, mem = append(rp, backend.HeaderValues{Name: "Last-Modified", Values: lm}), mem+backend.HeaderMem("Last-Modified", lm)
	}
	e.PrepareListed(rp, mem)
}

// runHandler runs the fill's handler on rw with the fill's context. A
// panic is recovered into p: not stored, failed, and kept to be raised
// again where the response already went out (produce's caller).
func (rf *routeFront) runHandler(c *call, ctx context.Context, rw *recorder, refresh bool, next nextFunc, p *produced) {
	r := c.r
	defer func() {
		if v := recover(); v != nil {
			p.notStored(r, NotStoredPanic)
			p.failed, p.panicked, p.fail = true, v, panicFailure
			if refresh || rw.hold {
				r.c.log.Error("routecache: handler panicked (stale entry served, or refresh dropped)", "region", r.name, "panic", v)
			}
		}
	}()
	p.err = next(rw, rf.req.WithContext(ctx))
}

// newRecorder returns the recorder a fill's handler writes to: the
// client's writer for a request's fill (held back when a stale-if-error
// fallback may replace the response), a sink for a refresh's, whose
// client was answered already (flushed here).
//
// A request's recorder is the one its flight holds (the fill context
// hands it over once: takeRecorder), if any.
func (rf *routeFront) newRecorder(c *call, tags *tagSet, refresh bool, ctx context.Context) *recorder {
	r := c.r
	if refresh {
		_ = http.NewResponseController(rf.w).Flush()
		rw := &recorder{w: &sinkWriter{h: http.Header{}}, before: http.Header{}, record: true, max: r.cfg.MaxEntryBytes, hold: true, hdr: http.Header{}}
		rw.onCommit = r.tagHeaderHook(tags, nil)
		return rw
	}
	onMiss := setMiss
	if r.cfg.Compress {
		onMiss = setMissVary
	}
	rw := takeRecorder(ctx) // zero: its flight's, used once
	if rw == nil {
		rw = new(recorder)
	}
	// Field by field: the recorder is zero, and in the flight (on the
	// heap) a whole literal is copied with barriers.
	rw.w, rw.before, rw.record, rw.max = rf.w, cloneNonEmpty(rf.w.Header()), true, r.cfg.MaxEntryBytes
	rw.onCommit, rw.fill = r.tagHeaderHook(tags, onMiss), c
	if c.fallback != nil {
		rw.hold, rw.hdr = true, rf.w.Header().Clone()
	}
	rf.rw = rw
	return rw
}

// addValidatorsIn gives an entry built at start the validators its
// response lacks: a strong ETag of its body, and Last-Modified at start.
// The values the cache adds go in ea, the entry's own allocation, when
// not nil. e.Header is canonical (keepStored), so it is indexed, not read
// with Get; the headers it may hold are in keys (snapKeys): those known
// absent are not looked up.
//
// It returns the values of those it added (len == cap), nil for one it
// did not add.
func addValidatorsIn(e *backend.Entry, start time.Time, ea *entryAlloc, keys snapKeys) (etag, lm []string) {
	if keys&snapEtag != 0 {
		if vs := e.Header["Etag"]; len(vs) > 0 {
			e.ETag = vs[0]
		}
	}
	addLM := true
	if keys&snapLastModified != 0 {
		vs := e.Header["Last-Modified"]
		addLM = len(vs) == 0 || vs[0] == ""
	}
	var added []string
	switch {
	case ea != nil:
		added = ea.added[:0]
	case e.ETag == "" || addLM:
		added = make([]string, 0, 2)
	}
	if e.ETag == "" {
		if ea != nil {
			// Written once, here, and viewed: ea is the entry's alone.
			b := appendStrongETag(ea.etag[:0], e.Body)
			e.ETag = unsafe.String(&b[0], len(b))
		} else {
			e.ETag = strongETag(e.Body)
		}
		added = append(added, e.ETag)
		etag = added[len(added)-1 : len(added) : len(added)]
		e.Header["Etag"] = etag
	}
	if addLM {
		added = append(added, httpDate(start))
		lm = added[len(added)-1 : len(added) : len(added)]
		e.Header["Last-Modified"] = lm
		// The date just formatted, without parsing it back (Prepare).
		e.LastModified = time.Unix(start.Unix(), 0).UTC()
	}
	return etag, lm
}

// cloneNonEmpty is h.Clone(), or nil for an empty h (read only).
func cloneNonEmpty(h http.Header) http.Header {
	if len(h) == 0 {
		return nil
	}
	return h.Clone()
}

// sharedFailure is the failure a failed fill's waiters may answer: the
// origin's own 5xx as it was sent (replayable headers, so never
// Set-Cookie; the recorded body), a plain response with its status when it
// could not be kept whole, a 504 for a fill past FillTimeout that sent no
// 5xx, and nil for a failure only the framework renders (an error with no
// 5xx committed): a status below 500 is never shared, since a response
// that was not storable may be personal.
func sharedFailure(rw *recorder, timedOut bool) *failure {
	switch {
	case rw.commit && rw.status >= 500:
		if rw.over || rw.flushed || rw.hijacked {
			return plainFailure(rw.status, detailSharedFailure)
		}
		sent := canonicalHeader(rw.snapshot)
		return &failure{status: rw.status, header: storedHeader(canonicalHeader(rw.before), sent), body: rw.body, detail: detailSharedFailure}
	case timedOut:
		return plainFailure(http.StatusGatewayTimeout, detailFillTimeout)
	}
	return nil
}

// sinkWriter absorbs a background refresh's response.
type sinkWriter struct{ h http.Header }

func (s *sinkWriter) Header() http.Header { return s.h }

func (s *sinkWriter) WriteHeader(int) {}

func (s *sinkWriter) Write(b []byte) (int, error) { return len(b), nil }
