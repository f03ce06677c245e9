package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

var (
	_ backend.Leaser = (*redisBackend)(nil)
	_ backend.Leaser = (*memcacheBackend)(nil)
	_ backend.Leaser = (*nearBackend)(nil)
)

// releaseScript deletes the lease only if it still holds our token, so a
// holder whose lease expired cannot free someone else's.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func (b *redisBackend) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	ctx, cancel := b.op(ctx) // bounded like every Redis call, retries included
	defer cancel()
	token := strconv.FormatUint(backend.FreshCounter(), 36)
	ok, err := b.client.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return "", false, err
	}
	return token, ok, nil
}

func (b *redisBackend) Release(ctx context.Context, key, token string) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	return releaseScript.Run(ctx, b.client, []string{key}, token).Err()
}

func (b *memcacheBackend) Acquire(_ context.Context, key string, ttl time.Duration) (string, bool, error) {
	token := strconv.FormatUint(backend.FreshCounter(), 36)
	secs := int32((ttl + time.Second - 1) / time.Second)
	err := b.client.Add(&memcache.Item{Key: key, Value: []byte(token), Expiration: secs})
	switch {
	case err == nil:
		return token, true, nil
	case errors.Is(err, memcache.ErrNotStored):
		return "", false, nil
	}
	return "", false, err
}

// release is get-compare-delete: not atomic on Memcached, which has no
// compare-and-delete; a lease that expired in between may be freed early,
// which costs at most one extra origin call.
func (b *memcacheBackend) Release(_ context.Context, key, token string) error {
	it, err := b.client.Get(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(it.Value) != token {
		return nil
	}
	if err := b.client.Delete(key); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcache lease release: %w", err)
	}
	return nil
}

var (
	_ backend.LeasePoller = (*redisBackend)(nil)
	_ backend.LeasePoller = (*memcacheBackend)(nil)
	_ backend.LeasePoller = (*nearBackend)(nil)
)

// poll is load (the entry's bounded GETRANGE, its counters) with a bounded
// read of the lease key, in one pipeline. It is on the miss path only. A
// foreign value too long to be a token reads as no lease.
func (b *redisBackend) Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
	ctx, cancel := b.op(ctx)
	defer cancel()
	pipe := b.client.Pipeline()
	ec := redis.NewStringCmd(ctx, "getrange", key, 0, b.maxEntryArg)
	_ = pipe.Process(ctx, ec)
	cmds := make([]*redis.StringCmd, len(names)+1)
	for i, n := range names {
		cmds[i] = smallRead(ctx, pipe, n)
	}
	cmds[len(names)] = smallRead(ctx, pipe, lkey)
	if err := execErr(pipe.Exec(ctx)); err != nil {
		return nil, false, err
	}
	for i := range names {
		v, err := smallResult(cmds[i])
		if err != nil {
			return nil, false, err
		}
		vals[i] = backend.ParseDecimal(v)
	}
	// Any value under the lease key holds it, a foreign one too (SET NX
	// could not take it either): only its absence releases the wait.
	token, err := cmds[len(names)].Result()
	held := err == nil && token != "" || isWrongType(err)
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, false, err
	}
	e, err := b.entryResult(ec)
	return e, held, err
}

// poll is load's GetMulti with the lease key added.
func (b *memcacheBackend) Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	keys := make([]string, 0, 2+len(names))
	keys = append(keys, key)
	keys = append(keys, names...)
	keys = append(keys, lkey)
	items, err := b.client.GetMulti(keys)
	if err != nil {
		return nil, false, b.failed(err)
	}
	for i, n := range names {
		vals[i] = memcacheCounter(items[n])
	}
	held := items[lkey] != nil
	it := items[key]
	if it == nil {
		return nil, held, nil
	}
	e, err := backend.DecodeShared(it.Value)
	return e, held, err
}

// poll reads the remote store, past the L1 (which may hold an entry from
// before an invalidation under the same key, and would hide the new one),
// and keeps what it read as load does.
func (n *nearBackend) Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
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
			n.l1.SetWithTTL(strings.Clone(key), e, int64(e.Size()+len(key)), ttl)
			n.l1.Wait()
		}
	}
	return e, held, nil
}

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
