// Package memory is the in-process backend (memory://): entries in a
// clockstore map bounded by a byte budget (lock-free reads, CLOCK
// eviction), counters in a map that is never evicted. It registers the
// "memory" scheme on import.
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

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/internal/clockstore"
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

// Backend keeps entries in a clockstore map bounded by a byte budget: a
// hit takes no lock and writes no shared cache line, and a stored entry is
// visible to the next Load at once. Counters are in a map of atomics that
// is never evicted: a missing counter therefore reads as the constant
// backend.BaseCounter, which bump never produces.
type Backend struct {
	entries  *clockstore.Map[Held]
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
	// created counts the counters created, each after it is published:
	// while it holds the value read before a lookup of a name that found
	// nothing, that name still has no counter (see Held). Counters are
	// never removed; code that ever removes one must move it too.
	created atomic.Uint64
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
	return c.find(name)
}

// find is get past the filter: the counter's shard lookup.
func (c *counterMap) find(name string) *atomic.Uint64 {
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
	// After the publication: a Held whose resolution missed the counter
	// read created before it (see Held.gen).
	c.created.Add(1)
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
	return &Backend{
		entries:  clockstore.New[Held](maxBytes),
		counterM: counterMap{seed: maphash.MakeSeed()},
		maxBytes: maxBytes,
	}, nil
}

// Load reads the counters and the entry: no lock, no allocation.
func (m *Backend) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	_ = m.Counters(ctx, names, vals)
	return m.Entry(key), nil
}

// Counters reads the counters: a missing one is BaseCounter. The filter
// test is written out here, not called (mayExist does not inline): on a
// hit most counters were never bumped and end at it.
func (m *Backend) Counters(_ context.Context, names []string, vals []uint64) error {
	vals = vals[:len(names)]
	cm := &m.counterM
	for i, n := range names {
		v := uint64(backend.BaseCounter)
		if h := quickHash(n); cm.exists[h>>6&63].Load()&(1<<(h&63)) != 0 {
			if c := cm.find(n); c != nil {
				v = c.Load()
			}
		}
		vals[i] = v
	}
	return nil
}

// Counter is Counters of one name: its value, BaseCounter if missing.
func (m *Backend) Counter(name string) uint64 {
	cm := &m.counterM
	if h := quickHash(name); cm.exists[h>>6&63].Load()&(1<<(h&63)) != 0 {
		if c := cm.find(name); c != nil {
			return c.Load()
		}
	}
	return backend.BaseCounter
}

// Entry returns the entry stored under key, or nil, without reading any
// counter: a caller that checks the entry's counters itself (Unchanged)
// reads them after it, by the names the entry holds.
func (m *Backend) Entry(key string) *backend.Entry {
	if h := m.entries.LoadPtr(key); h != nil {
		return h.e
	}
	return nil
}

// Unchanged reports whether every counter of snap holds its snapshot
// value now, read as Counters reads it (a missing one is BaseCounter),
// and none is 0. Like Counters, it takes no lock and writes nothing.
func (m *Backend) Unchanged(snap []backend.CounterSnap) bool {
	cm := &m.counterM
	for i := range snap {
		s := &snap[i]
		v := uint64(backend.BaseCounter)
		if h := quickHash(s.Name); cm.exists[h>>6&63].Load()&(1<<(h&63)) != 0 {
			if c := cm.find(s.Name); c != nil {
				v = c.Load()
			}
		}
		if v != s.Value || v == 0 {
			return false
		}
	}
	return true
}

// Ensure is Counters: a memory counter is never missing.
func (m *Backend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	return m.Counters(ctx, names, vals)
}

// Store keeps the entry, charged its MemSize, its key's bytes and its
// Held's (and the store's clockstore.ItemOverhead) against the budget,
// evicting others by CLOCK to stay within it. The entry is visible to the
// next Load as soon as Store returns.
func (m *Backend) Store(_ context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	// No expiry in the store: with one, every hit reads the clock.
	// Expired entries are never served (the region checks their times);
	// they are replaced by the next fill of their key or evicted by budget
	// pressure like any other entry.
	_ = ttl
	_, err := m.StoreHeld(key, e)
	return err
}

// StoreHeld is Store, returning what the store holds for the entry: its
// Held, as Held(key) returns it while the key is not stored again, for a
// caller that checks the entry's counters once it is stored
// (HeldUnchanged, which reads no name's hash while no counter was
// created since). It returns nil and backend.ErrTooLarge for an entry
// the budget cannot hold.
func (m *Backend) StoreHeld(key string, e *backend.Entry) (*Held, error) {
	e.TrimBody()
	h := m.hold(key, e)
	// The key is charged as if copied, whether or not it is.
	cost := e.MemSize() + int64(len(key)) + h.memSize()
	// The entry's own copy of the key (a key that is its canonical key:
	// unhashed), which nobody writes (see backend.Backend), serves as the
	// store's: no copy of it.
	owned := key == e.Key
	if owned {
		key = e.Key
	}
	if p := m.entries.SetPtr(key, owned, h, cost, 0); p != nil {
		return p, nil
	}
	return nil, backend.ErrTooLarge
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

// Wait returns at once: a Store is visible when it returns, with nothing
// buffered. It stays for callers (tests) written against a store that
// buffered its writes.
func (m *Backend) Wait() {}

// Close releases the entries.
func (m *Backend) Close() error {
	m.entries.Clear()
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
