package memcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/internal/wire"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/eko/gocache/lib/v4/store"
	memcachestore "github.com/eko/gocache/store/memcache/v4"
)

// Defaults of the memcache:// options.
const (
	// DefaultTimeout bounds each Memcached operation (dial, read,
	// write) when the URL sets no timeout option.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultMaxIdle is the number of idle connections kept per
	// server when the URL sets no max_idle option. gomemcache's own default
	// (2) makes a loaded process dial and close hundreds of sockets.
	DefaultMaxIdle = 64
	// DefaultMaxItem is memcached's default item size limit (-I 1m).
	DefaultMaxItem = 1 << 20
)

const (
	// ItemOverhead is what memcached adds to key and value when it
	// checks an item against its size limit (item header, CAS, CRLF,
	// terminators). Measured on memcached 1.6: with a 76-byte key the
	// largest value accepted under -I 1m is 1048576-76-59 bytes.
	ItemOverhead = 64
	// memcacheMaxRelative is the largest expiration memcached reads as
	// seconds from now; larger values are absolute unix times.
	memcacheMaxRelative = 30 * 24 * 60 * 60
)

func init() {
	backend.Register("memcache", func(u *url.URL, _ backend.Options) (backend.Backend, error) { return openMemcache(u) })
}

// Backend writes entries through gocache's memcache store (the
// project's storage boundary) and uses the native gomemcache client for
// what that store lacks: one GetMulti per lookup (the entry and its
// counters; gomemcache sends one "gets" per server, to all servers in
// parallel) and atomic counters with Add and Increment.
//
// The store's Set has two TTL bugs on v4.2.4, fixed by memcacheExpiry: it
// sends int32(ttl.Seconds()), so a TTL under one second becomes 0 (never
// expires), and a TTL over 30 days is read by memcached as an absolute
// unix time in 1970 (expired at once). Its Clear (flush_all) and tag
// Invalidate are never called.
type Backend struct {
	client  *memcache.Client
	st      *memcachestore.MemcacheStore
	maxItem int
	// counterTTL is how long a counter lives after it was created, bumped
	// or touched by the store of an entry depending on it (counterLifer).
	counterTTL atomic.Int64 // a time.Duration; SetCounterTTL may raise it at any time
}

// openMemcache parses memcache://h1:11211,h2:11211?timeout=100ms&max_idle=64&max_item=1MiB.
func openMemcache(u *url.URL) (*Backend, error) {
	raw := backend.DisplayURL(u)
	if u.User != nil {
		return nil, fmt.Errorf("backend %q: memcache:// takes no user or password", raw)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("backend %q: memcache:// takes no path (got %q)", raw, u.Path)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("backend %q: no server (want memcache://host:port[,host:port...])", raw)
	}
	hosts, err := backend.Hosts(u)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", raw, err)
	}
	timeout := DefaultTimeout
	maxIdle := DefaultMaxIdle
	maxItem := int64(DefaultMaxItem)
	for k, vs := range u.Query() {
		if len(vs) > 1 {
			return nil, fmt.Errorf("backend %q: option %q given %d times", raw, k, len(vs))
		}
		v := vs[0]
		switch k {
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("backend %q: timeout: bad duration %q (want e.g. 100ms)", raw, v)
			}
			timeout = d
		case "max_idle":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("backend %q: max_idle: bad value %q (want a positive integer)", raw, v)
			}
			maxIdle = n
		case "max_item":
			n, err := backend.ParseBytes(v)
			if err != nil || n > math.MaxInt32 {
				return nil, fmt.Errorf("backend %q: max_item: bad size %q (want memcached's -I value, e.g. 1MiB)", raw, v)
			}
			maxItem = n
		default:
			return nil, fmt.Errorf("backend %q: unknown option %q (memcache:// takes timeout, max_idle, max_item)", raw, k)
		}
	}
	// memcache.New ignores address errors and leaves the client without
	// servers (every call then fails with ErrNoServers): resolve here so a
	// bad host is a configuration error.
	ss := new(memcache.ServerList)
	if err := ss.SetServers(hosts...); err != nil {
		return nil, fmt.Errorf("backend %q: %w", raw, err)
	}
	client := memcache.NewFromSelector(ss)
	client.Timeout = timeout
	client.MaxIdleConns = maxIdle
	b := &Backend{
		client:  client,
		st:      memcachestore.NewMemcache(client),
		maxItem: int(maxItem),
	}
	b.SetCounterTTL(backend.DefaultCounterTTL)
	return b, nil
}

// Load reads the entry under key and the named counters (backend.Backend).
func (b *Backend) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keys := make([]string, 0, 1+len(names))
	keys = append(keys, key)
	keys = append(keys, names...)
	items, err := b.client.GetMulti(keys)
	if err != nil {
		return nil, b.failed(err)
	}
	for i, n := range names {
		vals[i] = memcacheCounter(items[n])
	}
	it := items[key]
	if it == nil {
		return nil, nil
	}
	// gomemcache allocates each item's value for this call and keeps no
	// reference to it: the entry may view it.
	return backend.DecodeShared(it.Value)
}

// Counters reads the named counters (0 = missing).
func (b *Backend) Counters(ctx context.Context, names []string, vals []uint64) error {
	if len(names) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	items, err := b.client.GetMulti(names)
	if err != nil {
		return b.failed(err)
	}
	for i, n := range names {
		vals[i] = memcacheCounter(items[n])
	}
	return nil
}

// memcacheCounter reads a counter item: decimal ASCII, 0 when missing or
// not a number. (memcached pads a number shortened in place with spaces.)
func memcacheCounter(it *memcache.Item) uint64 {
	if it == nil {
		return 0
	}
	return backend.ParseDecimal(strings.TrimRight(unsafeString(it.Value), " ")) // read here only, never kept
}

// counterItem is a counter holding v, living counterTTL (renewed by
// bump and by the store of an entry depending on it). A counter that
// expires or is evicted reads as missing and is re-created with a fresh
// value: the entries recording the old one are misses.
func (b *Backend) counterItem(name string, v uint64) *memcache.Item {
	return &memcache.Item{Key: name, Value: strconv.AppendUint(nil, v, 10), Expiration: b.counterExpiry()}
}

// counterExpiry is counterTTL as memcached's expiration field.
func (b *Backend) counterExpiry() int32 {
	return int32(memcacheExpiry(b.counterLife(), time.Now()) / time.Second)
}

// SetCounterTTL sets how long counters live (counterLifer).
func (b *Backend) SetCounterTTL(d time.Duration) { b.counterTTL.Store(int64(d)) }

// counterLife is how long counters live now.
func (b *Backend) counterLife() time.Duration { return time.Duration(b.counterTTL.Load()) }

// touch renews a counter's lifetime. It is best effort: a counter gone
// meanwhile stays gone (its entries are misses), and a failure leaves the
// counter with its previous lifetime; a network failure drops the idle
// connections as any other does.
func (b *Backend) touch(name string, exp int32) {
	_ = b.failed(b.client.Touch(name, exp))
}

// memcacheAttempts bounds the retries of a counter operation racing with
// deletions or evictions of the same counter.
const memcacheAttempts = 5

// Ensure creates the missing counters with fresh values.
func (b *Backend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		if vals[i] != 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		v, err := b.create(n)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	return nil
}

// create adds a counter with a fresh value unless one exists, and returns
// the value now current.
func (b *Backend) create(name string) (uint64, error) {
	for range memcacheAttempts {
		fresh := backend.FreshCounter()
		err := b.client.Add(b.counterItem(name, fresh))
		if err == nil {
			return fresh, nil
		}
		if !errors.Is(err, memcache.ErrNotStored) {
			return 0, err
		}
		it, err := b.client.Get(name)
		if errors.Is(err, memcache.ErrCacheMiss) {
			continue // deleted or evicted since the Add: add again
		}
		if err != nil {
			return 0, err
		}
		if v := memcacheCounter(it); v != 0 {
			return v, nil
		}
		// Something that is not a counter sits under the name: replace it,
		// unless it changed meanwhile.
		it.Value = strconv.AppendUint(nil, fresh, 10)
		it.Expiration = b.counterExpiry()
		err = b.client.CompareAndSwap(it)
		if err == nil {
			return fresh, nil
		}
		if !errors.Is(err, memcache.ErrCASConflict) && !errors.Is(err, memcache.ErrNotStored) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("memcache: counter %q kept changing while being created", name)
}

// Bump increments a counter and renews its lifetime (incr keeps an item's
// expiration: a touch follows it); a missing one is created from a fresh
// random value (never 0 or 1), so a counter lost to eviction or expiry
// never repeats a value an entry may have recorded.
func (b *Backend) Bump(ctx context.Context, name string) error {
	_, err := b.increment(ctx, name)
	return err
}

// increment is bump returning the counter's new value, and whether it
// moved on from a value an entry may hold (false when it was created or
// replaced).
func (b *Backend) increment(ctx context.Context, name string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for range memcacheAttempts {
		n, err := b.client.Increment(name, 1)
		switch {
		case err == nil:
			b.touch(name, b.counterExpiry())
			return n, nil
		case errors.Is(err, memcache.ErrCacheMiss):
			err = b.client.Add(b.counterItem(name, backend.FreshCounter()))
			if err == nil {
				return 0, nil
			}
			if !errors.Is(err, memcache.ErrNotStored) {
				return 0, err
			}
			// Created by someone else meanwhile: increment that one.
		case strings.Contains(err.Error(), "non-numeric value"):
			// Not a counter: overwriting it with a value never used is an
			// invalidation too.
			return 0, b.client.Set(b.counterItem(name, backend.FreshCounter()))
		default:
			return 0, err
		}
	}
	return 0, fmt.Errorf("memcache: counter %q kept disappearing while being bumped", name)
}

// Store writes the entry for ttl.
func (b *Backend) Store(ctx context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v := e.Encode()
	if len(v)+len(key)+ItemOverhead > b.maxItem {
		return backend.ErrTooLarge
	}
	err := b.failed(b.st.Set(ctx, key, v, store.WithExpiration(memcacheExpiry(ttl, time.Now()))))
	if err != nil && strings.Contains(err.Error(), "object too large") {
		// The server's -I is below max_item ("SERVER_ERROR object too
		// large for cache").
		return backend.ErrTooLarge
	}
	if err != nil {
		return err
	}
	// The counters the entry recorded live at least as long as it
	// (counterLifetime). Memcached has no pipelining here: one touch per
	// counter, on fills only (never on hits).
	exp := b.counterExpiry()
	for _, c := range e.Counters {
		b.touch(c.Name, exp)
	}
	return nil
}

// memcacheExpiry turns a TTL into the duration to hand gocache's memcache
// store, which sends int32(d.Seconds()) as the item's expiration.
//
//   - Whole seconds, rounded up, plus one: memcached's clock ticks once a
//     second and an item set with expiration n is gone at the n-th tick, so
//     anywhere between n-1 and n seconds later (a 1 s item was measured
//     gone after 64 ms). The extra second keeps every entry stored at least
//     its TTL; freshness is decided by the envelope, never by the server.
//     This also fixes the store's sub-second bug (int32(0.5) = 0 = "never
//     expires").
//   - Past memcached's 30-day limit for relative times, the absolute unix
//     time (the store would send the relative seconds, which memcached
//     reads as a date in 1970: expired at once), capped at the largest
//     int32 (2038).
//
// ttl <= 0 means no expiry, as in the memory backend.
func memcacheExpiry(ttl time.Duration, now time.Time) time.Duration {
	if ttl <= 0 {
		return 0
	}
	secs := int64(ttl/time.Second) + 1
	if ttl%time.Second != 0 {
		secs++
	}
	if secs <= memcacheMaxRelative {
		return time.Duration(secs) * time.Second
	}
	abs := now.Unix() + secs
	if abs > math.MaxInt32 || abs < 0 {
		abs = math.MaxInt32
	}
	return time.Duration(abs) * time.Second
}

// failed drops the client's idle connections after a network failure
// (refused, reset, EOF, timeout) and returns err. gomemcache reuses idle
// connections without checking them: after a server restart every
// connection pooled before the crash is dead, and each would fail one
// request in turn — one breaker probe per cooldown, so a busy process
// took up to max_idle cooldowns to cache again.
func (b *Backend) failed(err error) error {
	var ne net.Error
	if err != nil && (errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		_ = b.client.Close() // closes idle connections only; the client stays usable
	}
	return err
}

// Remote is true: the store is shared between instances.
func (b *Backend) Remote() bool { return true }

// Close drops the idle connections; it never flushes anything.
func (b *Backend) Close() error { return b.client.Close() }

// SoftBump moves the counter on and records its mark.
//
// Memcached: Increment returns the new value; a counter that had to be
// created has no "before" any entry could hold, so it gets no mark.
//
// SoftBump moves the counter on and records its mark.
func (b *Backend) SoftBump(ctx context.Context, name string) error {
	n, err := b.increment(ctx, name)
	if err != nil || n == 0 {
		return err
	}
	return b.client.Set(&memcache.Item{Key: wire.SoftKey(name), Value: []byte(wire.EncodeMark(backend.SoftMark{Old: n - 1, New: n})), Expiration: b.counterExpiry()})
}

// SoftMarks reads the soft marks of the named counters.
func (b *Backend) SoftMarks(_ context.Context, names []string, marks []backend.SoftMark) error {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = wire.SoftKey(n)
	}
	got, err := b.client.GetMulti(keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		marks[i] = backend.SoftMark{}
		if it, ok := got[k]; ok {
			marks[i] = wire.DecodeMark(it.Value)
		}
	}
	return nil
}

// Acquire takes the lease on key for ttl, if no one holds it.
func (b *Backend) Acquire(_ context.Context, key string, ttl time.Duration) (string, bool, error) {
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

// Release is get-compare-delete: not atomic on Memcached, which has no
// compare-and-delete; a lease that expired in between may be freed early,
// which costs at most one extra origin call.
func (b *Backend) Release(_ context.Context, key, token string) error {
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

// Poll is load's GetMulti with the lease key added.
func (b *Backend) Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
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

// unsafeString views b as a string; b must not be written while it is used.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Client is the gomemcache client (tests inspect the servers with it).
func (b *Backend) Client() *memcache.Client { return b.client }

// MaxItem is the item size limit the backend assumes (max_item).
func (b *Backend) MaxItem() int { return b.maxItem }
