package core

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
)

// DefaultNearStaleness is how long a near cache on Memcached trusts the
// counter values it read, when the URL sets no near_staleness.
const DefaultNearStaleness = time.Second

// nearBackend is an in-process L1 in front of a Redis or Memcached
// backend, enabled by the URL option near_max_bytes. It keeps decoded
// entries (bounded by the byte budget) and the counter values it read.
// A lookup whose entry and counters are all local costs no round trip.
//
// Coherence: on Redis, every invalidation is also PUBLISHed on the
// channel "routecache:inv", by the Redis backend itself in the increment's
// round trip, whether or not its Cache has a near cache; every near cache
// subscribes and drops its local copy of the counter named in a message,
// so its next read goes to Redis. While the subscription is down, the L1 is bypassed; when it is
// back, every local counter is dropped. On Memcached, which has no
// pub/sub, a local counter is trusted for near_staleness (default 1 s)
// after it was read: an invalidation made by another instance can go
// unseen for that long.
type nearBackend struct {
	inner     backend.Backend
	l1        *ristretto.Cache[string, *backend.Entry]
	maxBytes  int64
	staleness time.Duration // ttl mode (memcache); 0 in pub/sub mode

	mu sync.RWMutex
	// local holds the counter values read, bounded by a quarter of
	// near_max_bytes (nearcounters.go); the entries get the rest.
	local localCounters
	// epoch moves on every invalidation seen; a remote read started in an
	// older epoch does not install its counter values (they may be stale).
	epoch atomic.Uint64

	// pub/sub (Redis only)
	client   redis.UniversalClient
	channel  string
	instance string
	coherent atomic.Bool
	onRemote func(counter string) // backend.Options.OnRemote
	cancel   context.CancelFunc
	done     chan struct{}
	psMu     sync.Mutex
	ps       *redis.PubSub
	log      *slog.Logger
	// stats
	localHits, remoteLoads, messages, resubscribes atomic.Uint64
	// applied, when set (by tests), is told of each counter a message
	// dropped, after it was dropped.
	applied atomic.Pointer[func(counter string)]
}

type nearCounter struct {
	v       uint64
	checked int64
}

// wrapNear builds the near cache when the URL asks for one.
func wrapNear(inner backend.Backend, u *url.URL, q url.Values, opts backend.Options) (backend.Backend, error) {
	nb := q.Get("near_max_bytes")
	ns := q.Get("near_staleness")
	if nb == "" {
		if ns != "" {
			return nil, fmt.Errorf("backend %q: near_staleness needs near_max_bytes", u.Redacted())
		}
		return inner, nil
	}
	maxBytes, err := parseBytes(nb)
	if err != nil {
		return nil, fmt.Errorf("backend %q: near_max_bytes: %w", u.Redacted(), err)
	}
	seed := maphash.MakeSeed()
	// near_max_bytes bounds the entries and the local counters together:
	// the counters may take a quarter of it.
	counterBytes := maxBytes / 4
	client, err := ristretto.NewCache(&ristretto.Config[string, *backend.Entry]{
		NumCounters: max(maxBytes/256*10, 1000), MaxCost: maxBytes - counterBytes, BufferItems: 64,
		// One hash per lookup, as in the memory backend: the region
		// compares the entry's key text, so a collision is only a miss.
		KeyToHash: func(k string) (uint64, uint64) { return maphash.String(seed, k), 0 },
	})
	if err != nil {
		return nil, fmt.Errorf("backend %q: near cache: %w", u.Redacted(), err)
	}
	n := &nearBackend{inner: inner, l1: client, maxBytes: maxBytes, local: newLocalCounters(counterBytes), log: opts.Log(), onRemote: opts.OnRemote}
	rb, isRedis := inner.(*redisBackend)
	switch {
	case isRedis:
		if ns != "" {
			return nil, fmt.Errorf("backend %q: near_staleness applies to memcache:// only (Redis near caches are kept coherent by pub/sub)", u.Redacted())
		}
		n.client = rb.client
		n.channel = invalidationChannel
		n.instance = rb.instance // its messages are published by rb
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel, n.done = cancel, make(chan struct{})
		ready := make(chan struct{})
		go n.subscribe(ctx, ready)
		select { // wait briefly for the first subscription, not forever
		case <-ready:
		case <-time.After(2 * time.Second):
		}
	default:
		n.staleness = DefaultNearStaleness
		if ns != "" {
			d, err := time.ParseDuration(ns)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("backend %q: near_staleness: bad duration %q (want e.g. 500ms)", u.Redacted(), ns)
			}
			n.staleness = d
		}
	}
	return n, nil
}

// subscribe keeps the pub/sub subscription and marks the near cache
// incoherent whenever it is not known to be live.
func (n *nearBackend) subscribe(ctx context.Context, ready chan struct{}) {
	defer close(n.done)
	ps := n.client.Subscribe(ctx, n.channel)
	n.psMu.Lock()
	n.ps = ps
	n.psMu.Unlock()
	defer ps.Close()
	var once sync.Once
	for {
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: ping so a dead connection shows up.
				if perr := ps.Ping(ctx); perr != nil {
					n.lose(perr)
				}
				continue
			}
			n.lose(err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// (Re)subscribed: anything may have been missed meanwhile.
				n.dropAll()
				n.resubscribes.Add(1)
				n.coherent.Store(true)
				once.Do(func() { close(ready) })
			}
		case *redis.Message:
			n.messages.Add(1)
			inst, counter, ok := strings.Cut(m.Payload, "|")
			if !ok {
				continue
			}
			n.drop(counter)
			if f := n.applied.Load(); f != nil {
				(*f)(counter)
			}
			if inst != n.instance {
				if n.onRemote != nil {
					n.onRemote(counter)
				}
			}
		case *redis.Pong:
		}
	}
}

func (n *nearBackend) lose(err error) {
	if n.coherent.Swap(false) {
		n.log.Warn("routecache: near cache pub/sub lost; reading through to Redis until it is back", "err", err)
	}
	n.dropAll()
}

func (n *nearBackend) drop(counter string) {
	n.epoch.Add(1)
	n.mu.Lock()
	n.local.del(counter)
	n.mu.Unlock()
}

func (n *nearBackend) dropAll() {
	n.epoch.Add(1)
	n.mu.Lock()
	n.local.reset()
	n.mu.Unlock()
}

// usableLocally reports whether local counters may be trusted now.
func (n *nearBackend) trusted() bool {
	if n.client != nil {
		return n.coherent.Load()
	}
	return true
}

func (n *nearBackend) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	if n.trusted() {
		if e, ok := n.l1.Get(key); ok && n.localCounters(names, vals) {
			n.localHits.Add(1)
			return e, nil
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
		n.l1.SetWithTTL(strings.Clone(key), e, int64(e.Size()+len(key)), ttl)
		n.l1.Wait() // ristretto buffers sets; make this one visible now
	}
	return e, nil
}

// localCounters fills vals from local copies, if all are present and
// (on Memcached) recent enough.
func (n *nearBackend) localCounters(names []string, vals []uint64) bool {
	var oldest int64
	if n.staleness > 0 {
		oldest = time.Now().UnixNano() - int64(n.staleness)
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for i, name := range names {
		c, ok := n.local.get(name)
		if !ok || c.checked < oldest {
			return false
		}
		vals[i] = c.v
	}
	return true
}

// install keeps counter values read from the backend, unless an
// invalidation was seen since the read began.
func (n *nearBackend) install(epoch uint64, names []string, vals []uint64) {
	if !n.trusted() {
		return
	}
	now := time.Now().UnixNano()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.epoch.Load() != epoch {
		return
	}
	for i, name := range names {
		if vals[i] != 0 {
			n.local.put(name, nearCounter{v: vals[i], checked: now})
		}
	}
}

func (n *nearBackend) Counters(ctx context.Context, names []string, vals []uint64) error {
	epoch := n.epoch.Load()
	if err := n.inner.Counters(ctx, names, vals); err != nil {
		return err
	}
	n.install(epoch, names, vals)
	return nil
}

func (n *nearBackend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	return n.inner.Ensure(ctx, names, vals)
}

func (n *nearBackend) Store(ctx context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	if err := n.inner.Store(ctx, backend.RemoteEntryKey(key), e, ttl); err != nil {
		return err
	}
	n.l1.SetWithTTL(strings.Clone(key), e, int64(e.Size()+len(key)), ttl)
	n.l1.Wait()
	return nil
}

// bump invalidates remotely and drops the local copy. On Redis the inner
// backend publishes the invalidation itself (in the same round trip), as
// it does for a Cache without near cache, so every near cache hears of
// every invalidation whichever instance made it.
func (n *nearBackend) Bump(ctx context.Context, name string) error {
	err := n.inner.Bump(ctx, name)
	n.drop(name)
	return err
}

// setCounterTTL passes the counters' lifetime to the inner backend.
func (n *nearBackend) SetCounterTTL(d time.Duration) {
	if cl, ok := n.inner.(backend.CounterLifer); ok {
		cl.SetCounterTTL(d)
	}
}

func (n *nearBackend) Remote() bool { return true }

// KeyForm is KeysNear: the L1 keeps entries under their canonical key (a
// near hit hashes nothing); the key goes to the remote store as
// backend.RemoteEntryKey, the key an instance without near cache uses.
func (n *nearBackend) KeyForm() backend.KeyForm { return backend.KeysNear }

// Prepare prepares the inner backend; a restart it detects drops the
// local counters too.
func (n *nearBackend) Prepare(regions []backend.RegionCounters) {
	if rb, ok := n.inner.(*redisBackend); ok {
		rb.guard.configure(n.log, n.dropAll)
	}
	if p, ok := n.inner.(backend.Preparer); ok {
		p.Prepare(regions)
	}
}

// BoundEntries passes the bound to the inner backend.
func (n *nearBackend) BoundEntries(maxBody int64) { boundEntries(n.inner, maxBody) }

func (n *nearBackend) Close() error {
	if n.cancel != nil {
		n.cancel()
		n.psMu.Lock()
		if n.ps != nil {
			_ = n.ps.Close() // unblocks a pending receive
		}
		n.psMu.Unlock()
		<-n.done
	}
	n.l1.Close()
	return n.inner.Close()
}

// leaser passes the inner backend's leases through.
func (n *nearBackend) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if l, ok := n.inner.(backend.Leaser); ok {
		return l.Acquire(ctx, key, ttl)
	}
	return "", true, nil
}

func (n *nearBackend) Release(ctx context.Context, key, token string) error {
	if l, ok := n.inner.(backend.Leaser); ok {
		return l.Release(ctx, key, token)
	}
	return nil
}
