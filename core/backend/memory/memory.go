// Package memory is the in-process backend (memory://): entries in
// ristretto bounded by a byte budget, counters in a map that is never
// evicted. It registers the "memory" scheme on import.
package memory

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/eko/gocache/lib/v4/store"
	ristrettostore "github.com/eko/gocache/store/ristretto/v4"

	"github.com/routecache/routecache/core/backend"
)

// DefaultMaxBytes is the byte budget of "memory://" without max_bytes.
const DefaultMaxBytes = 64 << 20

func init() {
	backend.Register("memory", func(u *url.URL, _ backend.Options) (backend.Backend, error) { return Open(u) })
}

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.SoftBumper = (*Backend)(nil)
)

// Backend keeps entries in ristretto (through gocache's ristretto
// store), bounded by a byte budget, and counters in a map of atomics that
// is never evicted: a missing counter therefore reads as the constant
// backend.BaseCounter, which bump never produces.
type Backend struct {
	client   *ristretto.Cache[string, *backend.Entry]
	st       *ristrettostore.RistrettoStore[string, *backend.Entry]
	counterM counterMap
	soft     softMap
	maxBytes int64
}

// counterMap is a sharded copy-on-write map of counters: a read is one
// hash of the name, one atomic pointer load and a lookup by that hash,
// with no lock and no shared write, so hits on any number of cores do not
// contend. The maps are keyed by the name's 64-bit hash (hashing the name
// once, where a string-keyed map would hash it again); names that share a
// hash chain behind it. Creating a counter (the first invalidation of a
// tag or key) copies one shard of 64.
type counterMap struct {
	seed   maphash.Seed
	shards [64]counterShard
	// exists is a one-sided filter in front of the shards: a clear bit
	// (indexed by a cheap hash of the name's length and last bytes) means
	// no counter of such a name was ever created, and a lookup ends
	// without hashing the whole name. Counters are never removed, so bits
	// are never cleared; a set bit only sends the lookup on to its shard.
	exists [64]atomic.Uint64
}

// quickHash mixes a name's length and last eight bytes: counter names
// share long prefixes and differ at the end.
func quickHash(s string) uint64 {
	x := uint64(len(s)) * 0x9e3779b97f4a7c15
	if len(s) >= 8 {
		x ^= binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[len(s)-8:]), 8))
	} else {
		for i := 0; i < len(s); i++ {
			x = x<<8 | x>>56 ^ uint64(s[i])
		}
	}
	x ^= x >> 29
	x *= 0xbf58476d1ce4e5b9
	return x ^ x>>32
}

func (c *counterMap) mayExist(name string) bool {
	h := quickHash(name)
	return c.exists[h>>6&63].Load()&(1<<(h&63)) != 0
}

type counterShard struct {
	m  atomic.Pointer[map[uint64]*namedCounter]
	mu sync.Mutex // serialises writers
	_  [48]byte   // keep shards on separate cache lines
}

// namedCounter is one counter; next chains names with the same hash.
type namedCounter struct {
	v    atomic.Uint64
	name string
	next *namedCounter
}

func (c *counterMap) get(name string) *atomic.Uint64 {
	if !c.mayExist(name) {
		return nil
	}
	h := maphash.String(c.seed, name)
	if m := c.shards[h&63].m.Load(); m != nil {
		for n := (*m)[h]; n != nil; n = n.next {
			if n.name == name {
				return &n.v
			}
		}
	}
	return nil
}

// getOrCreate returns the counter, creating it with init() when missing.
func (c *counterMap) getOrCreate(name string, init func() uint64) (v *atomic.Uint64, created bool) {
	if v = c.get(name); v != nil {
		return v, false
	}
	h := maphash.String(c.seed, name)
	s := &c.shards[h&63]
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	var head *namedCounter
	if old != nil {
		head = (*old)[h]
		for n := head; n != nil; n = n.next {
			if n.name == name {
				return &n.v, false
			}
		}
	}
	next := make(map[uint64]*namedCounter, 1+lenOf(old))
	if old != nil {
		for k, x := range *old {
			next[k] = x
		}
	}
	n := &namedCounter{name: strings.Clone(name), next: head}
	n.v.Store(init())
	// The filter bit goes up before the counter is published: a reader
	// that finds it clear read before the creation.
	qh := quickHash(name)
	c.exists[qh>>6&63].Or(1 << (qh & 63))
	next[h] = n
	s.m.Store(&next)
	return &n.v, true
}

func lenOf(m *map[uint64]*namedCounter) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// Open opens memory://[?max_bytes=SIZE] (default DefaultMaxBytes).
func Open(u *url.URL) (*Backend, error) {
	if u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("backend %q: memory:// takes no host or path", backend.DisplayURL(u))
	}
	maxBytes := int64(DefaultMaxBytes)
	for k, vs := range u.Query() {
		switch k {
		case "max_bytes":
			n, err := backend.ParseBytes(vs[len(vs)-1])
			if err != nil {
				return nil, fmt.Errorf("backend %q: max_bytes: %w", backend.DisplayURL(u), err)
			}
			maxBytes = n
		default:
			return nil, fmt.Errorf("backend %q: unknown option %q (memory:// takes max_bytes)", backend.DisplayURL(u), k)
		}
	}
	return New(maxBytes)
}

// New opens a memory backend bounded by maxBytes.
func New(maxBytes int64) (*Backend, error) {
	// Ristretto wants about ten counters per item it will hold when full;
	// an item costs its body plus about 1 KiB of bookkeeping (memSize), so
	// assume items of at least 1 KiB.
	counters := maxBytes / 1024 * 10
	if counters < 1000 {
		counters = 1000
	}
	// The budget bounds the whole store: what ristretto allocates up
	// front (its admission sketch, doorkeeper and buffers) is taken off
	// what the entries may cost, leaving at least half for them.
	maxCost := max(maxBytes-ristrettoFixedBytes(counters), maxBytes/2)
	seed := maphash.MakeSeed()
	client, err := ristretto.NewCache(&ristretto.Config[string, *backend.Entry]{
		NumCounters: counters,
		MaxCost:     maxCost,
		BufferItems: 64,
		// One hash of the key instead of ristretto's two (memhash for the
		// slot, xxhash to detect collisions): the region compares every
		// entry's key text with the request's, so a collision can only
		// cost a miss, never serve another key's response.
		KeyToHash: func(k string) (uint64, uint64) { return maphash.String(seed, k), 0 },
	})
	if err != nil {
		return nil, fmt.Errorf("memory backend: %w", err)
	}
	return &Backend{
		client:   client,
		st:       ristrettostore.NewRistretto[string, *backend.Entry](client),
		counterM: counterMap{seed: maphash.MakeSeed()},
		maxBytes: maxBytes,
	}, nil
}

// Load reads the entry with ristretto's own Get rather than through the
// gocache store: the store's Get takes the key as an interface value,
// which costs an allocation on every hit. Writes go through the store.
func (m *Backend) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	_ = m.Counters(ctx, names, vals)
	e, _ := m.client.Get(key)
	return e, nil
}

// Counters reads the counters: a missing one is BaseCounter.
func (m *Backend) Counters(_ context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		if c := m.counterM.get(n); c != nil {
			vals[i] = c.Load()
		} else {
			vals[i] = backend.BaseCounter
		}
	}
	return nil
}

// Ensure is Counters: a memory counter is never missing.
func (m *Backend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	return m.Counters(ctx, names, vals)
}

// ristrettoFixedBytes is the heap a ristretto cache with numCounters
// counters allocates whatever it holds: the count-min sketch (4 rows of
// 4-bit counters, rounded up to a power of two), the doorkeeper bloom
// filter (1% false positives, a power of two of bits), the 32 Ki-slot set
// buffer and the read stripes.
func ristrettoFixedBytes(numCounters int64) int64 {
	n := int64(1)
	for n < numCounters {
		n <<= 1
	}
	sketch := 4 * n / 2
	bits := int64(1)
	for float64(bits) < float64(numCounters)*9.6 {
		bits <<= 1
	}
	return sketch + bits/8 + 32<<10*8 + 64<<10
}

// Store keeps the entry, charged its MemSize against the budget.
func (m *Backend) Store(ctx context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	// A recorded body grew by append and may hold up to twice its length
	// in capacity, all of it kept alive by the entry: keep an exactly
	// sized copy instead (the entry is not shared before it is stored),
	// so that what the budget is charged is what the heap holds.
	if c := cap(e.Body); c > len(e.Body) {
		if b := append([]byte(nil), e.Body...); cap(b) < c {
			e.Body = b
		}
	}
	cost := e.MemSize() + int64(len(key))
	if cost > m.maxBytes {
		return backend.ErrTooLarge
	}
	// No ristretto TTL: with one, every Get reads the clock (68 ns here).
	// Expired entries are never served (the region checks their times);
	// they are replaced by the next fill of their key or evicted by budget
	// pressure like any other entry. SynchronousSet waits for ristretto's
	// buffers so the next read sees the entry.
	_ = ttl
	if err := m.st.Set(ctx, key, e, store.WithCost(cost), store.WithSynchronousSet()); err != nil {
		// Ristretto drops a set when its buffers are busy or its policy
		// rejects the item; gocache's error prints the whole value (the
		// response body), which must not reach logs.
		return backend.ErrDropped
	}
	return nil
}

// Bump moves the counter on (a fresh random value when it is created).
func (m *Backend) Bump(_ context.Context, name string) error {
	if c, created := m.counterM.getOrCreate(name, backend.FreshCounter); !created {
		c.Add(1)
	}
	return nil
}

// Remote is false: the store is this process's.
func (m *Backend) Remote() bool { return false }

// MaxBytes is the byte budget.
func (m *Backend) MaxBytes() int64 { return m.maxBytes }

// Wait waits for ristretto's buffered writes to apply.
func (m *Backend) Wait() { m.client.Wait() }

// Close releases the store.
func (m *Backend) Close() error {
	m.client.Close()
	return nil
}

type softMap struct {
	mu sync.Mutex
	m  map[string]backend.SoftMark
}

// SoftBump bumps the counter and records its mark.
func (m *Backend) SoftBump(_ context.Context, name string) error {
	c, created := m.counterM.getOrCreate(name, backend.FreshCounter)
	var mark backend.SoftMark
	if created {
		mark = backend.SoftMark{Old: backend.BaseCounter, New: c.Load()}
	} else {
		n := c.Add(1)
		mark = backend.SoftMark{Old: n - 1, New: n}
	}
	m.soft.mu.Lock()
	if m.soft.m == nil {
		m.soft.m = map[string]backend.SoftMark{}
	}
	m.soft.m[strings.Clone(name)] = mark
	m.soft.mu.Unlock()
	return nil
}

// SoftMarks reads the marks of the counters.
func (m *Backend) SoftMarks(_ context.Context, names []string, marks []backend.SoftMark) error {
	m.soft.mu.Lock()
	defer m.soft.mu.Unlock()
	for i, n := range names {
		marks[i] = m.soft.m[n]
	}
	return nil
}
