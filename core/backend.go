package core

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/eko/gocache/lib/v4/store"
	ristrettostore "github.com/eko/gocache/store/ristretto/v4"
)

// backend is what a region needs from storage. Counter values are never 0
// once they exist; 0 in a load result means "missing", which the region
// treats as a miss. Implementations must be safe for concurrent use.
type backend interface {
	// load fetches the entry under key (nil if absent) and fills vals with
	// the current value of each named counter, in one round trip where the
	// store allows. A value that cannot be decoded is reported as errCorrupt
	// together with the counters.
	Load(ctx context.Context, key string, counters []string, vals []uint64) (*entry, error)
	// counters fills vals with the named counters' values (0 = missing).
	Counters(ctx context.Context, names []string, vals []uint64) error
	// ensure creates each missing counter (vals[i]==0) with a fresh value
	// and stores in vals the value now current.
	Ensure(ctx context.Context, names []string, vals []uint64) error
	// store writes an entry that expires after ttl.
	Store(ctx context.Context, key string, e *entry, ttl time.Duration) error
	// bump changes a counter to a value it never had (an invalidation).
	Bump(ctx context.Context, counter string) error
	// remote reports whether keys leave the process (and must be hashed).
	Remote() bool
	Close() error
}

// entryAllowance is what an encoded entry may hold besides its body: the
// envelope, headers, ETag, canonical key and counter snapshot. Real
// entries use a few KiB of it.
const entryAllowance = 1 << 20

// maxEntrySize is the largest encoded entry of a region whose bodies are
// capped at maxBody bytes (RegionConfig.MaxEntryBytes).
func maxEntrySize(maxBody int64) int64 {
	if maxBody > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return maxBody + entryAllowance
}

// entryBounder is a backend that bounds what a lookup reads of a stored
// value by the largest entry it may hold, so that a huge value planted
// under an entry key costs a bounded read and is that key's corrupt entry
// (a miss, overwritten by the fill), not a read that times out as a
// backend error and opens the breaker for every key. Entries larger than
// the bound are refused when stored (errTooLarge), so that none is ever
// read back as corrupt.
type entryBounder interface {
	// boundEntries raises the bound to fit the entries of a region whose
	// bodies are capped at maxBody bytes. It is called for each region
	// using the backend, before the first request.
	BoundEntries(maxBody int64)
}

// boundEntries tells be the body cap of a region using it (a no-op for
// backends that bound reads otherwise, or not at all).
func boundEntries(be backend, maxBody int64) {
	if b, ok := be.(entryBounder); ok {
		b.BoundEntries(maxBody)
	}
}

func (n *nearBackend) BoundEntries(maxBody int64) { boundEntries(n.inner, maxBody) }

// counterLifer is implemented by backends whose counters expire (Redis,
// Memcached): New gives each the lifetime counterLifetime computes from
// the regions using it.
type counterLifer interface {
	SetCounterTTL(d time.Duration)
}

// counterSlack is added to the longest entry lifetime of a backend's
// regions to make its counters' lifetime: room for clock skew between
// instances and for the time between a counter's renewal and the store
// it comes with.
const counterSlack = time.Minute

// counterLifetime is how long a counter lives after it was created, bumped
// or renewed by the store of an entry depending on it: the longest time
// any of the regions' entries can be served (TTL plus the longer of Stale
// and StaleIfError), plus the FillTimeout during which a fill holds a
// snapshot before storing, plus counterSlack. An entry is stored with its
// counters renewed, so no counter expires while an entry recording it can
// still be served; a counter that expires anyway (evicted, or shortened by
// an instance with shorter lifetimes) is re-created from a fresh random
// value, and the entries recording the old one are misses.
func counterLifetime(cfgs []RegionConfig) time.Duration {
	var d time.Duration
	for _, rc := range cfgs {
		d = max(d, rc.TTL+max(rc.Stale, rc.StaleIfError)+rc.FillTimeout)
	}
	return d + counterSlack
}

// openers maps a URL scheme to the function opening that kind of backend.
// Each backend file registers its schemes in an init function.
var openers = map[string]func(u *url.URL) (backend, error){
	"memory": func(u *url.URL) (backend, error) { return openMemory(u) },
}

// openBackend builds a backend from a region's Backend URL. The options
// near_max_bytes and near_staleness, valid on every remote scheme, put a
// near cache in front of it (see nearBackend).
func openBackend(raw string, log *slog.Logger) (backend, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL: report only the reason, since the URL
		// may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("backend URL does not parse: %w", err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("backend %q: missing scheme (want one of %s)", u.Redacted(), schemeList())
	}
	open, ok := openers[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("backend %q: unknown scheme %q (want one of %s)", u.Redacted(), u.Scheme, schemeList())
	}
	q := u.Query()
	if !q.Has("near_max_bytes") && !q.Has("near_staleness") {
		b, err := open(u)
		if err == nil {
			setBackendLogger(b, log)
		}
		return b, err
	}
	if u.Scheme == "memory" {
		return nil, fmt.Errorf("backend %q: a memory backend needs no near cache", u.Redacted())
	}
	inner := *u
	iq := u.Query()
	iq.Del("near_max_bytes")
	iq.Del("near_staleness")
	inner.RawQuery = iq.Encode()
	b, err := open(&inner)
	if err != nil {
		return nil, err
	}
	setBackendLogger(b, log)
	nb, err := wrapNear(b, u, q, log)
	if err != nil {
		b.Close()
		return nil, err
	}
	return nb, nil
}

func schemeList() string {
	names := make([]string, 0, len(openers))
	for k := range openers {
		names = append(names, k+"://")
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// parseBytes reads sizes like "64MiB", "512KiB", "1GiB", "1000" (bytes).
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want a positive number with an optional unit B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return n * mult, nil
}

// memoryBackend keeps entries in ristretto (through gocache's ristretto
// store), bounded by a byte budget, and counters in a map of atomics that
// is never evicted: a missing counter therefore reads as the constant
// baseCounter, which bump never produces.
type memoryBackend struct {
	client   *ristretto.Cache[string, *entry]
	st       *ristrettostore.RistrettoStore[string, *entry]
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

// baseCounter is the value of a memory counter that was never bumped.
const baseCounter = 1

func openMemory(u *url.URL) (*memoryBackend, error) {
	if u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("backend %q: memory:// takes no host or path", u.Redacted())
	}
	maxBytes := int64(DefaultMemoryBytes)
	for k, vs := range u.Query() {
		switch k {
		case "max_bytes":
			n, err := parseBytes(vs[len(vs)-1])
			if err != nil {
				return nil, fmt.Errorf("backend %q: max_bytes: %w", u.Redacted(), err)
			}
			maxBytes = n
		default:
			return nil, fmt.Errorf("backend %q: unknown option %q (memory:// takes max_bytes)", u.Redacted(), k)
		}
	}
	return newMemoryBackend(maxBytes)
}

func newMemoryBackend(maxBytes int64) (*memoryBackend, error) {
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
	client, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
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
	return &memoryBackend{
		client:   client,
		st:       ristrettostore.NewRistretto[string, *entry](client),
		counterM: counterMap{seed: maphash.MakeSeed()},
		maxBytes: maxBytes,
	}, nil
}

// load reads the entry with ristretto's own Get rather than through the
// gocache store: the store's Get takes the key as an interface value,
// which costs an allocation on every hit. Writes go through the store.
func (m *memoryBackend) Load(ctx context.Context, key string, names []string, vals []uint64) (*entry, error) {
	_ = m.Counters(ctx, names, vals)
	e, _ := m.client.Get(key)
	return e, nil
}

func (m *memoryBackend) Counters(_ context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		if c := m.counterM.get(n); c != nil {
			vals[i] = c.Load()
		} else {
			vals[i] = baseCounter
		}
	}
	return nil
}

func (m *memoryBackend) Ensure(ctx context.Context, names []string, vals []uint64) error {
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

func (m *memoryBackend) Store(ctx context.Context, key string, e *entry, ttl time.Duration) error {
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
		return errTooLarge
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
		return errDropped
	}
	return nil
}

func (m *memoryBackend) Bump(_ context.Context, name string) error {
	if c, created := m.counterM.getOrCreate(name, freshCounter); !created {
		c.Add(1)
	}
	return nil
}

func (m *memoryBackend) Remote() bool { return false }

func (m *memoryBackend) Close() error {
	m.client.Close()
	return nil
}

// errDropped reports an entry the memory store declined to keep.
var errDropped = errors.New("routecache: memory store dropped the entry")

// errTooLarge reports an entry the backend cannot hold.
var errTooLarge = errors.New("routecache: entry larger than the backend accepts")

// freshCounter returns a new counter value: random, never 0 or baseCounter,
// so a counter re-created after it was lost cannot repeat an old value.
func freshCounter() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			// crypto/rand does not fail on supported platforms; fall back to the clock.
			return uint64(time.Now().UnixNano()) | 1<<63
		}
		if v := binary.BigEndian.Uint64(b[:]) >> 1; v > baseCounter {
			return v
		}
	}
}

// storeBackend runs on any gocache store.StoreInterface the user built. The
// interface has no multi-get and no atomic counters, so a lookup costs one
// Get per counter plus one for the entry, and an invalidation writes a new
// random value (safe under races: a value is never reused).
type storeBackend struct {
	st store.StoreInterface
}

func newStoreBackend(st store.StoreInterface) *storeBackend { return &storeBackend{st: st} }

func (s *storeBackend) Load(ctx context.Context, key string, names []string, vals []uint64) (*entry, error) {
	if err := s.Counters(ctx, names, vals); err != nil {
		return nil, err
	}
	v, err := s.st.Get(ctx, key)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	switch t := v.(type) {
	case string:
		return decodeString(t) // immutable: the entry views it
	case []byte:
		return decodeEntry(t) // the store may reuse it: copied
	}
	return nil, errCorrupt
}

func (s *storeBackend) Counters(ctx context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		v, err := s.st.Get(ctx, n)
		if err != nil {
			if isNotFound(err) {
				vals[i] = 0
				continue
			}
			return err
		}
		vals[i] = parseCounter(v)
	}
	return nil
}

func (s *storeBackend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		if vals[i] != 0 {
			continue
		}
		v := freshCounter()
		// n may view a pooled buffer (reqState): a store may keep its key.
		if err := s.st.Set(ctx, strings.Clone(n), []byte(strconv.FormatUint(v, 10))); err != nil {
			return err
		}
		vals[i] = v
	}
	return nil
}

func (s *storeBackend) Store(ctx context.Context, key string, e *entry, ttl time.Duration) error {
	return s.st.Set(ctx, key, e.Encode(), store.WithExpiration(ttl))
}

func (s *storeBackend) Bump(ctx context.Context, name string) error {
	return s.st.Set(ctx, name, []byte(strconv.FormatUint(freshCounter(), 10)))
}

func (s *storeBackend) Remote() bool { return true }
func (s *storeBackend) Close() error { return nil }

func isNotFound(err error) bool {
	return errors.Is(err, store.NotFound{})
}

// parseCounter reads a counter value: decimal ASCII as a string or bytes,
// 0 when missing or not a number.
func parseCounter(v any) uint64 {
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case []byte:
		s = unsafeString(t) // read here only, never kept
	default:
		return 0
	}
	return parseDecimal(s)
}

// parseDecimal is strconv.ParseUint(s, 10, 64) with 0 for an error, with
// a direct loop for the up to 19 plain digits a counter is written with.
func parseDecimal(s string) uint64 {
	if n := len(s); n > 0 && n <= 19 {
		var v uint64
		for i := 0; i < n; i++ {
			d := s[i] - '0'
			if d > 9 {
				goto slow
			}
			v = v*10 + uint64(d)
		}
		return v
	}
slow:
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// setCounterLifetimes gives each backend whose counters expire the
// lifetime its regions need (counterLifetime).
func setCounterLifetimes(regions map[string]*Region) {
	cfgs := map[backend][]RegionConfig{}
	for _, r := range regions {
		cfgs[r.be] = append(cfgs[r.be], r.cfg)
	}
	for be, list := range cfgs {
		if cl, ok := be.(counterLifer); ok {
			cl.SetCounterTTL(counterLifetime(list))
		}
	}
}

// setBackendLogger hands the Cache's logger to a backend whose client logs
// by itself (Redis: see redisLogger).
func setBackendLogger(b backend, log *slog.Logger) {
	if l, ok := b.(interface{ SetLogger(*slog.Logger) }); ok {
		l.SetLogger(log)
	}
}
