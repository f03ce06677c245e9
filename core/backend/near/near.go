package near

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/internal/clockstore"

	"github.com/redis/go-redis/v9"
)

// DefaultStaleness is how long a near cache on Memcached trusts the
// counter values it read, when the URL sets no near_staleness.
const DefaultStaleness = time.Second

// Cache is an in-process L1 in front of a Redis or Memcached
// backend, enabled by the URL option near_max_bytes. It keeps decoded
// entries (bounded by the byte budget) and the counter values it read.
// A lookup whose entry and counters are all local costs no round trip.
//
// Coherence: on Redis, every invalidation is also PUBLISHed on the
// channel "routecache:inv", by the Redis backend itself in the increment's
// round trip, whether or not its Cache has a near cache; every near cache
// subscribes and drops its local copy of the counter named in a message,
// so its next read goes to Redis, and hands another instance's event (what
// the invalidation was, carried by the message: redis/message.go) to
// backend.Options.OnRemote. While the subscription is down, the L1 is bypassed; when it is
// back, every local counter is dropped. On Memcached, which has no
// pub/sub, a local counter is trusted for near_staleness (default 1 s)
// after it was read: an invalidation made by another instance can go
// unseen for that long, and is never reported (nothing carries it).
type Cache struct {
	inner     backend.Backend
	redis     *redisbe.Backend          // inner, when it is Redis (set by Wrap)
	l1        *clockstore.Map[*l1Entry] // lock-free reads, CLOCK eviction
	maxBytes  int64
	staleness time.Duration // ttl mode (memcache); 0 in pub/sub mode
	clock     atomic.Bool   // a user of clockstore's clock until Close

	// mu serialises the writes to local (install, drop, dropAll) with the
	// epoch check; reads of local take no lock.
	mu sync.Mutex
	// local holds the counter values read, bounded by a quarter of
	// near_max_bytes (counters.go); the entries get the rest.
	local localCounters
	// epoch moves on every invalidation seen; a remote read started in an
	// older epoch does not install its counter values (they may be stale).
	epoch atomic.Uint64
	// gen moves after every change to local (a value installed, whatever
	// it evicted; a counter dropped; all dropped), under mu: values read
	// from local after gen was g are still what local holds for as long
	// as gen is g (l1Snap).
	gen atomic.Uint64

	// pub/sub (Redis only)
	client   redis.UniversalClient
	channel  string
	instance string
	coherent atomic.Bool
	onRemote func(ev backend.Event) // backend.Options.OnRemote
	cancel   context.CancelFunc
	done     chan struct{}
	psMu     sync.Mutex
	ps       *redis.PubSub
	log      *slog.Logger
	// On a Redis Cluster, guards subscribe on every master as well
	// (guards.go): a message forwarded over the cluster bus is lost when
	// a bus link is down, while the subscription that would have received
	// it stays up. guardsDown counts the guards not subscribed now (and,
	// until the masters were first listed, one more): local counters are
	// trusted only while it is 0.
	guardsDown atomic.Int32
	gmu        sync.Mutex
	guards     map[string]*guard
	listed     bool
	gdone      chan struct{}
	gstops     sync.WaitGroup // guards of removed masters being stopped
	// stats
	localHits, remoteLoads, messages, resubscribes atomic.Uint64
	remoteCounters                                 atomic.Uint64 // Counters calls
	// applied, when set (by tests), is told of each counter a message
	// dropped, after it was dropped and the message handed to onRemote.
	applied atomic.Pointer[func(counter string)]
}

type nearCounter struct {
	v       uint64
	checked int64
}

// l1Entry is what the L1 keeps under an entry's key: the entry, and
// where the local counters its hits read are held, so that a hit finds
// their local copies without hashing their names (localCounters). ref[i]
// is for the i-th name of the lookup that set it: a hit whose i-th name is
// another, or whose counter is no longer held (dropped by an
// invalidation, evicted, replaced by a newer read), does not find it
// there and looks the name up in full.
//
// A ref only says where to look, and remembers no value: a counter's
// value is always read from the local counters as they are at the time of
// the hit, where an invalidation removed it. So a ref cannot make a hit
// serve a value an invalidation dropped.
//
// snap, when set, holds the counter values a hit read through the refs
// (l1Snap): a hit finds them there, with no lookup at all, for as long as
// the local counters have not changed since.
type l1Entry struct {
	e    *backend.Entry
	snap atomic.Pointer[l1Snap]
	ref  [l1Refs]clockstore.Ref
	// by is the producer a hit vouched for (Vouch): for an entry decoded
	// from the remote store (Producer nil), the route whose counter names
	// the entry was found to start with.
	by atomic.Value
}

// l1Snap is what a hit read from the local counters for an L1 entry, and
// when: the values of the entry's first n counters (e.Counters[:n], the
// names a hit passes when the route that stored the entry looks it up
// again), read after Cache.gen was gen. A hit uses them only if gen is
// still gen (no value installed, dropped or evicted since they were read:
// local holds these very values now) and it names these counters: it then
// returns what reading local would return, without reading it. It is
// immutable once published.
type l1Snap struct {
	gen  uint64
	n    int
	vals [l1Refs]uint64
}

// l1Refs is how many counters of an entry have a ref kept (the region's,
// the key's and five tags'); further counters are looked up in full.
const l1Refs = 7

// l1EntryCost is what the L1 charges an entry besides its Size and its
// key: the l1Entry (144 bytes) and its l1Snap (72 bytes), each in its
// allocation size class.
const l1EntryCost = 144 + 80

// setL1 keeps e in the L1 under key for ttl.
// Only an entry whose Key is key is kept (another, read under a
// colliding remote key, is of no use to a lookup of key), so what the L1
// holds under a key is that key's entry.
func (n *Cache) setL1(key string, e *backend.Entry, ttl time.Duration) {
	if e.Key != key {
		return
	}
	n.l1.Set(key, &l1Entry{e: e}, int64(e.Size()+len(key))+l1EntryCost, ttl)
}

// Wrap puts a near cache in front of inner when the URL asks for one
// (near_max_bytes, near_staleness in q; u names the backend in errors).
// On Redis its coherence comes from the backend's pub/sub channel; on
// any other backend, from near_staleness.
func Wrap(inner backend.Backend, u *url.URL, q url.Values, opts backend.Options) (backend.Backend, error) {
	nb := q.Get("near_max_bytes")
	ns := q.Get("near_staleness")
	if nb == "" {
		if ns != "" {
			return nil, fmt.Errorf("backend %q: near_staleness needs near_max_bytes", backend.DisplayURL(u))
		}
		return inner, nil
	}
	maxBytes, err := backend.ParseBytes(nb)
	if err != nil {
		return nil, fmt.Errorf("backend %q: near_max_bytes: %w", backend.DisplayURL(u), err)
	}
	// near_max_bytes bounds the entries and the local counters together:
	// the counters may take a quarter of it.
	counterBytes := maxBytes / 4
	l1 := clockstore.New[*l1Entry](maxBytes - counterBytes)
	n := &Cache{inner: inner, l1: l1, maxBytes: maxBytes, local: newLocalCounters(counterBytes), log: opts.Log(), onRemote: opts.OnRemote}
	rb, isRedis := inner.(*redisbe.Backend)
	n.redis = rb
	switch {
	case isRedis:
		if ns != "" {
			return nil, fmt.Errorf("backend %q: near_staleness applies to memcache:// only (Redis near caches are kept coherent by pub/sub)", backend.DisplayURL(u))
		}
		n.client = rb.Client()
		n.channel = redisbe.InvalidationChannel
		n.instance = rb.Instance() // its messages are published by rb
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel, n.done = cancel, make(chan struct{})
		if cc, ok := n.client.(*redis.ClusterClient); ok {
			n.guardsDown.Store(1) // the masters are not listed yet
			n.guards, n.gdone = map[string]*guard{}, make(chan struct{})
			go n.watchMasters(ctx, cc)
		}
		ready := make(chan struct{})
		go n.subscribe(ctx, ready)
		deadline := time.Now().Add(2 * time.Second)
		select { // wait briefly for the first subscription, not forever
		case <-ready:
		case <-time.After(2 * time.Second):
		}
		// On a cluster, as briefly for every master's guard (guards.go).
		for !n.trusted() && n.coherent.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	default:
		n.staleness = DefaultStaleness
		if ns != "" {
			d, err := time.ParseDuration(ns)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("backend %q: near_staleness: bad duration %q (want e.g. 500ms)", backend.DisplayURL(u), ns)
			}
			n.staleness = d
		}
	}
	clockstore.StartClock() // the L1's expiry checks; Close stops it
	n.clock.Store(true)
	return n, nil
}

// subscribe keeps the pub/sub subscription and marks the near cache
// incoherent whenever it is not known to be live.
func (n *Cache) subscribe(ctx context.Context, ready chan struct{}) {
	defer close(n.done)
	ps := n.client.Subscribe(ctx, n.channel)
	n.psMu.Lock()
	n.ps = ps
	n.psMu.Unlock()
	defer ps.Close()
	var once sync.Once
	n.listen(ctx, ps, listener{
		down: n.lose,
		up: func(resubscribed bool) {
			// Anything may have been missed meanwhile.
			n.dropAll()
			if resubscribed {
				n.resubscribes.Add(1)
			}
			n.coherent.Store(true)
			once.Do(func() { close(ready) })
		},
		msg: func(m *redis.Message) {
			n.messages.Add(1)
			inst, ev, ok := redisbe.ParseMessage(m.Payload)
			if !ok {
				return
			}
			n.drop(ev.Counter)
			if inst != n.instance && n.onRemote != nil {
				n.onRemote(ev)
			}
			if f := n.applied.Load(); f != nil {
				(*f)(ev.Counter)
			}
		},
	})
}

// pingEvery is how long a subscription may stay quiet before it is
// pinged. A ping left unanswered for as long again marks it down: the
// link may be silent (a partition, a blackholed route) with every write
// still succeeding into socket buffers, and the messages published
// meanwhile not arriving.
const pingEvery = time.Second

// errSilent is why a subscription that answers no ping is down.
var errSilent = errors.New("no answer to a ping within " + pingEvery.String())

// listener is what listen tells its subscription's owner.
type listener struct {
	// down: the subscription is not known to be live (an error, or a ping
	// unanswered); local counters must not be trusted.
	down func(err error)
	// up: (re)subscribed, or heard from again on the same connection
	// after silence (what was sent meanwhile arrives in order after it):
	// drop every local counter, then trust.
	up func(resubscribed bool)
	// msg: a message on the channel.
	msg func(m *redis.Message)
}

// listen receives on ps until ctx ends, pinging it when quiet.
func (n *Cache) listen(ctx context.Context, ps *redis.PubSub, l listener) {
	pinged, silent := false, false
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				if pinged && !silent {
					silent = true
					l.down(errSilent)
				}
				// Quiet channel: ping so a dead or silent link shows up.
				if perr := ps.Ping(ctx); perr != nil {
					l.down(perr)
				}
				pinged = true
				continue
			}
			pinged = false
			l.down(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		pinged = false
		if silent {
			silent = false
			l.up(false)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				l.up(true)
			}
		case *redis.Message:
			l.msg(m)
		}
	}
}

func (n *Cache) lose(err error) {
	if n.coherent.Swap(false) {
		n.log.Warn("routecache: near cache pub/sub lost; reading through to Redis until it is back", "err", err)
	}
	n.dropAll()
}

func (n *Cache) drop(counter string) {
	n.epoch.Add(1)
	n.mu.Lock()
	n.local.del(counter)
	n.gen.Add(1) // after the change: see l1Snap
	n.mu.Unlock()
}

func (n *Cache) dropAll() {
	n.epoch.Add(1)
	n.mu.Lock()
	n.local.reset()
	n.gen.Add(1)
	n.mu.Unlock()
}

// trusted reports whether local counters may be trusted now: on Redis,
// while the subscription (and on a cluster every master's guard) is up.
func (n *Cache) trusted() bool {
	if n.client != nil {
		return n.coherent.Load() && n.guardsDown.Load() == 0
	}
	return true
}

// Load reads the entry under key and the named counters (backend.Backend).
func (n *Cache) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	if n.trusted() {
		if le, ok := n.l1.Load(key); ok {
			// The values a previous hit read, if local has not changed
			// since (l1Snap) and these are the counters they are for.
			if s := le.snap.Load(); s != nil && s.gen == n.gen.Load() && s.n == len(names) && namesOf(le.e, names) {
				copy(vals, s.vals[:s.n])
				n.localHits.Add(1)
				return le.e, nil
			}
			if n.localCounters(le, names, vals) {
				n.localHits.Add(1)
				return le.e, nil
			}
		}
	}
	n.remoteLoads.Add(1)
	epoch := n.epoch.Load()
	e, err := n.inner.Load(ctx, backend.RemoteEntryKey(key), names, vals)
	if err != nil {
		return e, err
	}
	n.install(epoch, names, vals)
	if e == nil {
		return nil, nil
	}
	if ttl := time.Duration(e.StaleUntil - time.Now().UnixNano()); ttl > 0 {
		n.setL1(key, e, ttl) // visible to the next Load at once
	}
	return e, nil
}

// Vouch records, for the entry e the L1 holds under key, that producer
// names e's first counters for key just as e's own producer would (the
// caller checked it): Fresh then answers producer for an entry another
// instance stored. Nothing is recorded if the L1 holds another entry.
func (n *Cache) Vouch(key string, e *backend.Entry, producer any) {
	if le, ok := n.l1.Load(key); ok && le.e == e && le.by.Load() == nil {
		le.by.CompareAndSwap(nil, producer)
	}
}

// Fresh returns the entry the L1 holds under key when the counter
// values its last hit read (l1Snap) are still what the local counters
// hold and equal the entry's own snapshot of them, and the local copies
// of its further counters (runtime tags) equal it too: a Load by the
// entry's own names would return the entry with these values, which its
// validity check (reading the runtime tags' local copies: ReadLocal)
// would find unchanged since it was stored. It returns nil otherwise (no L1 entry,
// no such record, local changed since, a counter moved, the pub/sub
// subscription down, or a near cache on Memcached, which keeps no
// record), and the caller looks the entry up in full (Load). It also
// returns nil unless producer stored the entry (its Producer) or was
// vouched for it (Vouch). The entry is not checked for expiry; its Key
// is key (setL1).
func (n *Cache) Fresh(key string, producer any) *backend.Entry {
	if !n.trusted() {
		return nil
	}
	le, ok := n.l1.Load(key)
	if !ok || le.e.Producer != producer && le.by.Load() != producer {
		return nil
	}
	s, cs := le.snap.Load(), le.e.Counters
	if s == nil || s.gen != n.gen.Load() || s.n > len(cs) {
		return nil
	}
	vs := s.vals[:s.n]
	for i, c := range cs[:s.n] {
		if v := vs[i]; v == 0 || v != c.Value {
			return nil
		}
	}
	// Counters past the record (an entry's runtime tags, which its
	// lookups do not name) are read from local as they are now.
	if len(cs) > s.n {
		for _, c := range cs[s.n:] {
			if lc, ok := n.local.get(c.Name); !ok || lc.v == 0 || lc.v != c.Value {
				return nil
			}
		}
	}
	n.localHits.Add(1)
	return le.e
}

// localCounters fills vals from local copies, if all are present and
// (on Memcached) recent enough. The first names are looked up through the
// refs le keeps for them (l1Entry).
func (n *Cache) localCounters(le *l1Entry, names []string, vals []uint64) bool {
	var oldest int64
	if n.staleness > 0 {
		oldest = time.Now().UnixNano() - int64(n.staleness)
	}
	gen := n.gen.Load() // before any value is read (l1Snap)
	var cs [l1Refs]nearCounter
	k := min(len(names), l1Refs)
	if n.local.getRefs(names[:k], le.ref[:k], cs[:k]) != k {
		return false
	}
	if oldest == 0 { // pub/sub: every counter held is current
		vs := vals[:k]
		for i, c := range cs[:len(vs)] {
			vs[i] = c.v
		}
	} else {
		for i, c := range cs[:k] {
			if c.checked < oldest {
				return false
			}
			vals[i] = c.v
		}
	}
	if !n.readLocal(names[k:], vals[k:], oldest) {
		return false
	}
	// Pub/sub mode (on Memcached a value also ages, which gen does not
	// tell): keep the values for the next hits, if they are for the
	// entry's own counters and local has not changed while they were read.
	if oldest == 0 && k == len(names) && namesOf(le.e, names) && n.gen.Load() == gen {
		s := &l1Snap{gen: gen, n: k}
		copy(s.vals[:], vals[:k])
		le.snap.Store(s)
	}
	return true
}

// ReadLocal fills vals from the local copies of the named counters,
// as Load reads an entry's, and reports whether it could: every copy held
// and current (the pub/sub subscription up; on Memcached, checked within
// the staleness bound). Otherwise vals is undefined and the caller reads
// the counters with Counters. A hit checks the counters of an entry's
// runtime tags this way, which its Load did not name.
func (n *Cache) ReadLocal(names []string, vals []uint64) bool {
	if !n.trusted() {
		return false
	}
	var oldest int64
	if n.staleness > 0 {
		oldest = time.Now().UnixNano() - int64(n.staleness)
	}
	return n.readLocal(names, vals, oldest)
}

// readLocal fills vals from the local copies of names, each held and
// checked at oldest or later, and reports whether it could.
func (n *Cache) readLocal(names []string, vals []uint64, oldest int64) bool {
	for i, name := range names {
		c, ok := n.local.get(name)
		if !ok || c.checked < oldest {
			return false
		}
		vals[i] = c.v
	}
	return true
}

// namesOf reports whether names are the first counters of e, in order.
func namesOf(e *backend.Entry, names []string) bool {
	if len(e.Counters) < len(names) {
		return false
	}
	cs := e.Counters[:len(names)]
	for i, name := range names {
		if cs[i].Name != name {
			return false
		}
	}
	return true
}

// install keeps counter values read from the backend, unless an
// invalidation was seen since the read began.
func (n *Cache) install(epoch uint64, names []string, vals []uint64) {
	if !n.trusted() {
		return
	}
	now := time.Now().UnixNano()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.epoch.Load() != epoch {
		return
	}
	put := false
	for i, name := range names {
		if vals[i] != 0 {
			n.local.put(name, nearCounter{v: vals[i], checked: now})
			put = true
		}
	}
	if put {
		n.gen.Add(1) // after the change (and any eviction it made): l1Snap
	}
}

// Counters reads the named counters (0 = missing).
func (n *Cache) Counters(ctx context.Context, names []string, vals []uint64) error {
	n.remoteCounters.Add(1)
	epoch := n.epoch.Load()
	if err := n.inner.Counters(ctx, names, vals); err != nil {
		return err
	}
	n.install(epoch, names, vals)
	return nil
}

// Ensure creates the missing counters with fresh values.
func (n *Cache) Ensure(ctx context.Context, names []string, vals []uint64) error {
	return n.inner.Ensure(ctx, names, vals)
}

// Store writes the entry for ttl.
func (n *Cache) Store(ctx context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	if err := n.inner.Store(ctx, backend.RemoteEntryKey(key), e, ttl); err != nil {
		return err
	}
	// The L1 keeps this very entry: its body's whole allocation must be
	// what the budget is charged for.
	e.TrimBody()
	n.setL1(key, e, ttl)
	return nil
}

// Bump invalidates remotely and drops the local copy. On Redis the inner
// backend publishes the invalidation itself (in the same round trip), as
// it does for a Cache without near cache, so every near cache hears of
// every invalidation whichever instance made it.
func (n *Cache) Bump(ctx context.Context, name string) error {
	err := n.inner.Bump(ctx, name)
	n.drop(name)
	return err
}

// BumpEvent bumps through the inner backend's EventBumper (Redis
// publishes ev with the bump) or, on another backend, as SoftBump or Bump
// do, and drops the local copy (backend.EventBumper).
func (n *Cache) BumpEvent(ctx context.Context, ev backend.Event) error {
	eb, ok := n.inner.(backend.EventBumper)
	switch {
	case !ok && ev.Soft:
		return n.SoftBump(ctx, ev.Counter)
	case !ok:
		return n.Bump(ctx, ev.Counter)
	}
	err := eb.BumpEvent(ctx, ev)
	n.drop(ev.Counter)
	return err
}

// SetCounterTTL passes the counters' lifetime to the inner backend.
func (n *Cache) SetCounterTTL(d time.Duration) {
	if cl, ok := n.inner.(backend.CounterLifer); ok {
		cl.SetCounterTTL(d)
	}
}

// Remote is true: the store is shared between instances.
func (n *Cache) Remote() bool { return true }

// KeyForm is KeysNear: the L1 keeps entries under their canonical key (a
// near hit hashes nothing); the key goes to the remote store as
// backend.RemoteEntryKey, the key an instance without near cache uses.
func (n *Cache) KeyForm() backend.KeyForm { return backend.KeysNear }

// Prepare prepares the inner backend; a restart it detects drops the
// local counters too.
func (n *Cache) Prepare(regions []backend.RegionCounters) {
	if n.redis != nil {
		n.redis.OnReset(n.log, n.dropAll)
	}
	if p, ok := n.inner.(backend.Preparer); ok {
		p.Prepare(regions)
	}
}

// BoundEntries passes the bound to the inner backend.
func (n *Cache) BoundEntries(maxBody int64) {
	if b, ok := n.inner.(backend.EntryBounder); ok {
		b.BoundEntries(maxBody)
	}
}

// Close releases the backend's resources.
func (n *Cache) Close() error {
	if n.cancel != nil {
		n.cancel()
		n.psMu.Lock()
		if n.ps != nil {
			_ = n.ps.Close() // unblocks a pending receive
		}
		n.psMu.Unlock()
		<-n.done
		if n.gdone != nil {
			<-n.gdone
		}
	}
	n.l1.Clear()
	if n.clock.Swap(false) {
		clockstore.StopClock()
	}
	return n.inner.Close()
}

// Acquire takes the lease on key for ttl, if no one holds it.
//
// leaser passes the inner backend's leases through.
func (n *Cache) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if l, ok := n.inner.(backend.Leaser); ok {
		return l.Acquire(ctx, key, ttl)
	}
	return "", true, nil
}

// Release gives the lease back if token still holds it.
func (n *Cache) Release(ctx context.Context, key, token string) error {
	if l, ok := n.inner.(backend.Leaser); ok {
		return l.Release(ctx, key, token)
	}
	return nil
}

// SoftBump moves the counter on and records its mark.
func (n *Cache) SoftBump(ctx context.Context, name string) error {
	sb, ok := n.inner.(backend.SoftBumper)
	if !ok {
		return n.Bump(ctx, name)
	}
	err := sb.SoftBump(ctx, name)
	n.drop(name)
	return err
}

// SoftMarks reads the soft marks of the named counters.
func (n *Cache) SoftMarks(ctx context.Context, names []string, marks []backend.SoftMark) error {
	if sb, ok := n.inner.(backend.SoftBumper); ok {
		return sb.SoftMarks(ctx, names, marks)
	}
	clear(marks)
	return nil
}

// Poll reads the remote store, past the L1 (which may hold an entry from
// before an invalidation under the same key, and would hide the new one),
// and keeps what it read as load does.
func (n *Cache) Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
	p, ok := n.inner.(backend.LeasePoller)
	if !ok {
		e, err := n.inner.Load(ctx, backend.RemoteEntryKey(key), names, vals)
		return e, false, err
	}
	n.remoteLoads.Add(1)
	epoch := n.epoch.Load()
	e, held, err := p.Poll(ctx, backend.RemoteEntryKey(key), lkey, names, vals)
	if err != nil {
		return e, held, err
	}
	n.install(epoch, names, vals)
	if e != nil {
		if ttl := time.Duration(e.StaleUntil - time.Now().UnixNano()); ttl > 0 {
			n.setL1(key, e, ttl)
		}
	}
	return e, held, nil
}

// Stats are a near cache's counts, for tests and diagnostics.
type Stats struct {
	// LocalHits are lookups answered from the process (entry and every
	// counter local); RemoteLoads went to the remote store.
	LocalHits, RemoteLoads uint64
	// RemoteCounterReads are reads of counters alone (Counters), which
	// always go to the remote store.
	RemoteCounterReads uint64
	// Messages are the invalidation messages received; Resubscribes the
	// (re)subscriptions to the channel.
	Messages, Resubscribes uint64
	// Coherent is whether local counters are trusted now (the pub/sub
	// subscription is live; always true on Memcached).
	Coherent bool
}

// Stats returns the near cache's counts.
func (n *Cache) Stats() Stats {
	return Stats{
		LocalHits: n.localHits.Load(), RemoteLoads: n.remoteLoads.Load(), RemoteCounterReads: n.remoteCounters.Load(),
		Messages: n.messages.Load(), Resubscribes: n.resubscribes.Load(),
		Coherent: n.trusted(),
	}
}

// Client is the Redis client the near cache subscribes with (nil on
// Memcached).
func (n *Cache) Client() redis.UniversalClient { return n.client }

// Inner is the backend the near cache is in front of.
func (n *Cache) Inner() backend.Backend { return n.inner }

// OnApplied sets a function told of each counter an invalidation message
// dropped, after it was dropped and another instance's event was handed
// to backend.Options.OnRemote (tests wait on it).
func (n *Cache) OnApplied(f func(counter string)) { n.applied.Store(&f) }

// Remember keeps counter values as a read from the remote store does
// (tests fill the local counters with it).
func (n *Cache) Remember(names []string, vals []uint64) { n.install(n.epoch.Load(), names, vals) }

// LocalCounters is the number of counter values kept locally.
func (n *Cache) LocalCounters() int { return n.local.len() }

// HasLocal reports whether a counter's value is kept locally.
func (n *Cache) HasLocal(name string) bool {
	_, ok := n.local.get(name)
	return ok
}
