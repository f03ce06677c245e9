package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/internal/throttle"
)

// Pending invalidations. An invalidation routecache has accepted never
// vanishes: a counter bump the backend refused (down, paused, timed out,
// closed) is queued, per backend, with the event it tells other instances
// of (backend.Event), and retried with backoff until the backend takes
// it: a retried bump publishes the same event. The queue is applied in
// order and coalesces a bump with one of the same counter still waiting
// (the later application satisfies both: a bump applied at time t
// invalidates everything an earlier request for it would have; the same
// counter is the same tag, region or key, so the same event). Retrying may
// bump a counter twice (a timed-out INCR may have landed): that only costs
// a miss, and the other instances may hear of the invalidation twice.
//
// While any bump is pending on a backend, the regions on that backend
// serve nothing from the cache in this process (lookups are misses, fills
// are not handed to waiters), since this process cannot tell which
// entries the bump would invalidate. Close drains the queue within
// Config.CloseTimeout and reports what it could not apply.

// DefaultCloseTimeout bounds Close's wait for invalidating requests in
// flight and for pending invalidations when Config.CloseTimeout is 0.
const DefaultCloseTimeout = 10 * time.Second

const (
	invalRetryMin = 50 * time.Millisecond
	invalRetryMax = 2 * time.Second
	// invalAttemptTimeout bounds one retry on a store without a timeout
	// of its own (Redis and Memcached backends bound each operation).
	invalAttemptTimeout = 5 * time.Second
)

// ErrInvalidationPending is wrapped by the error of an invalidation the
// backend did not take: it was accepted and stays queued, retried until
// applied (Stats.InvalidationsPending). Until then this process serves
// nothing from the regions on that backend; other instances may still
// serve entries it would invalidate.
var ErrInvalidationPending = errors.New("routecache: invalidation not applied yet (queued and retried until the backend takes it)")

// ErrClosed is returned by invalidations made after Close: they are not
// applied, and counted in Stats.InvalidationsLost.
var ErrClosed = errors.New("routecache: cache is closed")

// pendingBump is a queued bump: ev.Counter is the counter, ev.Soft asks
// for a soft bump, and the rest is what the bump publishes.
type pendingBump struct {
	ev   backend.Event
	done chan struct{} // closed once applied
}

// bumpQueue holds one backend's pending counter bumps.
type bumpQueue struct {
	c  *Cache
	be backend.Backend
	// pending counts accepted bumps not yet applied; lookups read it.
	pending atomic.Int64
	lost    atomic.Uint64
	retries atomic.Uint64

	mu      sync.Mutex
	items   []*pendingBump
	byName  map[string]*pendingBump // items not being attempted, for coalescing
	running bool
	stopped chan struct{} // closed when the running worker exits
	attempt chan struct{} // closed and replaced after every attempt
	failed  chan struct{} // closed and replaced after every failed attempt
	lastErr error
	kick    chan struct{}
	ctx     context.Context // cancelled when Close gives up
	cancel  context.CancelFunc
	logged  throttle.Gate
}

func newBumpQueue(c *Cache, be backend.Backend) *bumpQueue {
	q := &bumpQueue{c: c, be: be, byName: map[string]*pendingBump{},
		attempt: make(chan struct{}), failed: make(chan struct{}), kick: make(chan struct{}, 1)}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// pendingErr wraps a backend failure of an accepted invalidation.
func pendingErr(err error) error { return fmt.Errorf("%w: %w", ErrInvalidationPending, err) }

// bump applies one counter bump with its event: through the backend's
// EventBumper, which tells other instances what it was, or else softly
// when asked and the backend can, or hard.
func bump(ctx context.Context, be backend.Backend, ev backend.Event) error {
	if eb, ok := be.(backend.EventBumper); ok {
		return eb.BumpEvent(ctx, ev)
	}
	if sb, ok := be.(backend.SoftBumper); ok && ev.Soft {
		return sb.SoftBump(ctx, ev.Counter)
	}
	return be.Bump(ctx, ev.Counter)
}

// apply bumps ev.Counter (softly if ev.Soft), telling the backend what the
// bump is for. With nothing pending on the backend it is
// applied at once, and queued if that fails. Otherwise it is queued behind
// the pending bumps (in order) and, when wait is set, the call waits for
// the worker's next attempt: nil once applied, or a pending error. A
// pending error means the bump was accepted and will be retried.
func (q *bumpQueue) apply(ctx context.Context, ev backend.Event, wait bool) (err error) {
	ctx, sp := q.startBump(ctx, ev)
	defer func() { endOp(sp, err) }()
	if q.pending.Load() == 0 {
		err := bump(ctx, q.be, ev)
		if err == nil {
			return nil
		}
		q.add(ev)
		return pendingErr(err)
	}
	it, failed := q.add(ev)
	if !wait {
		return pendingErr(errors.New("behind other pending invalidations"))
	}
	select {
	case <-it.done:
		return nil
	case <-failed:
		return pendingErr(q.err())
	case <-ctx.Done():
		select {
		case <-it.done:
			return nil
		default:
		}
		return pendingErr(ctx.Err())
	}
}

func (q *bumpQueue) err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lastErr == nil {
		return errors.New("backend failing")
	}
	return q.lastErr
}

// add queues a bump (or joins a waiting one of the same counter) and
// makes sure the worker runs; it returns the item and the channel closed
// at the worker's next failed attempt. The queue keeps its own copy of
// the event's strings (they may alias the caller's memory).
func (q *bumpQueue) add(ev backend.Event) (*pendingBump, chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.byName[ev.Counter]
	if ok {
		it.ev.Soft = it.ev.Soft && ev.Soft // a hard bump subsumes a soft one
	} else {
		ev.Counter, ev.Region, ev.Name = strings.Clone(ev.Counter), strings.Clone(ev.Region), strings.Clone(ev.Name)
		it = &pendingBump{ev: ev, done: make(chan struct{})}
		q.items = append(q.items, it)
		q.byName[it.ev.Counter] = it
		q.pending.Add(1)
		q.logFailure(ev.Counter)
	}
	if !q.running && q.ctx.Err() == nil {
		q.running = true
		q.stopped = make(chan struct{})
		go q.run(q.stopped)
	} else {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return it, q.failed
}

func (q *bumpQueue) logFailure(name string) {
	if q.logged.Every(time.Second) {
		q.c.log.Warn("routecache: invalidation queued for retry; regions on this backend serve nothing from the cache until it is applied",
			"counter", name, "pending", q.pending.Load())
	}
}

// run applies the queue head first, backing off while the backend fails,
// until the queue is empty or Close gives up.
func (q *bumpQueue) run(stopped chan struct{}) {
	defer close(stopped)
	backoff := invalRetryMin
	for {
		q.mu.Lock()
		if len(q.items) == 0 || q.ctx.Err() != nil {
			q.running = false
			q.mu.Unlock()
			return
		}
		it := q.items[0]
		if q.byName[it.ev.Counter] == it {
			delete(q.byName, it.ev.Counter) // being attempted: a new request queues anew
		}
		ev := it.ev
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(q.ctx, invalAttemptTimeout)
		err := bump(ctx, q.be, ev)
		cancel()
		q.mu.Lock()
		close(q.attempt)
		q.attempt = make(chan struct{})
		if err == nil {
			q.items[0] = nil
			q.items = q.items[1:]
			q.pending.Add(-1)
			close(it.done)
			q.mu.Unlock()
			backoff = invalRetryMin
			continue
		}
		if _, ok := q.byName[it.ev.Counter]; !ok {
			q.byName[it.ev.Counter] = it
		}
		q.lastErr = err
		close(q.failed)
		q.failed = make(chan struct{})
		q.mu.Unlock()
		q.retries.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-q.kick:
		case <-q.ctx.Done():
		}
		t.Stop()
		backoff = min(backoff*2, invalRetryMax)
	}
}

// drain waits until the queue is empty or the deadline passes.
func (q *bumpQueue) drain(deadline time.Time) {
	select {
	case q.kick <- struct{}{}: // retry now rather than after the backoff
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.mu.Unlock()
			return
		}
		ch := q.attempt
		q.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}

// abandon stops the worker and returns the counters never applied,
// counting them lost.
func (q *bumpQueue) abandon() []string {
	q.cancel()
	q.mu.Lock()
	stopped := q.stopped
	q.mu.Unlock()
	if stopped != nil {
		<-stopped
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var names []string
	for _, it := range q.items {
		names = append(names, it.ev.Counter)
	}
	q.items, q.byName = nil, map[string]*pendingBump{}
	q.lost.Add(uint64(len(names)))
	q.pending.Store(0)
	return names
}

// invalidationPending reports whether a bump is pending on the region's
// backend: lookups are then misses and fills are not handed to waiters.
func (r *Region) invalidationPending() bool {
	return r.q != nil && r.q.pending.Load() > 0
}

// drainGroup counts requests that Close waits for.
type drainGroup struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    chan struct{}
}

// enter admits a request, unless Close has started.
func (g *drainGroup) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.n++
	return true
}

func (g *drainGroup) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// closeAndWait refuses new requests and waits for the admitted ones until
// the deadline; it returns how many are still running.
func (g *drainGroup) closeAndWait(deadline time.Time) int {
	g.mu.Lock()
	g.closing = true
	if g.n == 0 {
		g.mu.Unlock()
		return 0
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// pendingGate sits between an invalidating route's recorder and the
// client: when the invalidation could not be applied, it sends 503 in
// place of the handler's answer and discards the handler's body.
type pendingGate struct {
	w       http.ResponseWriter
	refused bool
}

const pendingBody = "503 the change was made, but its cache invalidation is not applied yet (queued for retry); cached reads may be stale until it is\n"

func (g *pendingGate) Header() http.Header { return g.w.Header() }

func (g *pendingGate) WriteHeader(code int) {
	g.w.WriteHeader(code)
	if g.refused && code == http.StatusServiceUnavailable {
		_, _ = g.w.Write([]byte(pendingBody))
	}
}

func (g *pendingGate) Write(b []byte) (int, error) {
	if g.refused {
		return len(b), nil
	}
	return g.w.Write(b)
}

func (g *pendingGate) Unwrap() http.ResponseWriter { return g.w }

// refuse turns the committing response into a 503 (see Invalidator.Serve).
func (g *pendingGate) refuse(rw *recorder) {
	g.refused = true
	rw.status = http.StatusServiceUnavailable
	h := g.w.Header()
	clear(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", "1")
	h.Set("X-Cache-Invalidation", "pending")
}
