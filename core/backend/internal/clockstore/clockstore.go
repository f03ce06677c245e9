// Package clockstore is the in-process stores' map: string keys to values
// of any type, bounded by a total cost (bytes), evicting by CLOCK.
//
// A read takes no lock and writes no shared memory: it hashes the key
// once (hash/maphash), loads its shard's table through an atomic pointer
// and probes slots that are themselves atomic pointers to immutable
// items. The only write a hit may make is the item's reference flag, and
// only when the flag is clear, so a key hit again and again writes
// nothing after its first hit since the hand last passed.
//
// Writers serialize on their shard's mutex and publish with atomic
// stores: a Set is visible to every Load that starts after it returns,
// with no buffer or admission step in between. Deletions leave
// tombstones; a shard whose table fills up with items and tombstones is
// rebuilt into a new table, which is then published.
//
// Eviction is CLOCK: when the total cost passes the budget, the writer
// that passed it moves a hand over the shards' slots, clearing reference
// flags and evicting the first item found unreferenced (or expired).
//
// Expiry is on the monotonic clock (a step of the wall clock neither
// shortens nor lengthens a lifetime), read through a coarse copy while
// the package's clock runs (StartClock; clock.go): a hit on an item far
// from its expiry reads no clock at all.
package clockstore

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ItemOverhead is the cost the map adds to each item's own: the item
// struct (hash, key header, value, cost, expiry, flag: 64 bytes for a
// pointer-sized value, rounded to its allocation size class) and its share
// of the slot tables (8 bytes a slot, at a load between 3/8 and 3/4, and
// the table a rebuild leaves to the collector). With it, what the map is
// charged is what its structures hold on the heap, besides the values.
const ItemOverhead = 96

const (
	shardBits = 4
	numShards = 1 << shardBits
	minSlots  = 8
)

// Map is a cost-bounded map from string keys to values of type V. Its
// zero value is not usable: make one with New. It is safe for concurrent
// use.
type Map[V any] struct {
	seed    maphash.Seed
	maxCost int64
	total   atomic.Int64  // cost of the items held, all shards
	hand    atomic.Uint32 // the shard the next eviction starts in
	tomb    *item[V]      // the tombstone of deleted slots
	shards  [numShards]shard[V]
}

type shard[V any] struct {
	table atomic.Pointer[table[V]]
	mu    sync.Mutex // serialises writers
	live  int        // items in the table
	used  int        // slots not nil: items and tombstones
	cost  int64      // cost of the items in the table
	hand  int        // the slot the CLOCK hand is at
	_     [64]byte   // keep shards' written fields on separate cache lines
}

type table[V any] struct {
	mask  uint64
	slots []atomic.Pointer[item[V]]
}

// item is immutable once published, but for its reference flag.
type item[V any] struct {
	hash    uint64
	key     string
	val     V
	cost    int64
	expires int64 // on the package's clock (since); 0 never
	ref     atomic.Uint32
}

// New makes a map whose items cost at most maxCost in total (each item
// charged its cost plus ItemOverhead).
func New[V any](maxCost int64) *Map[V] {
	return &Map[V]{seed: maphash.MakeSeed(), maxCost: maxCost, tomb: new(item[V])}
}

// MaxCost is the budget the map was made with.
func (m *Map[V]) MaxCost() int64 { return m.maxCost }

// Cost is the total cost of the items held now.
func (m *Map[V]) Cost() int64 { return m.total.Load() }

// Load returns the value under key, if it is held and not expired. It
// takes no lock, allocates nothing, and writes only the item's reference
// flag, when that is clear.
func (m *Map[V]) Load(key string) (v V, ok bool) {
	h := maphash.String(m.seed, key)
	t := m.shards[h>>(64-shardBits)].table.Load()
	if t == nil {
		return v, false
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return v, false
		}
		if it.hash == h && it != m.tomb && it.key == key {
			// read, written out: the memory backend's hit comes here.
			if e := it.expires; e != 0 && !farFromExpiry(e) && e <= since() {
				return v, false
			}
			if it.ref.Load() == 0 {
				it.ref.Store(1)
			}
			return it.val, true
		}
	}
}

// LoadPtr is Load returning the address of the value held, or nil: the
// value as the item holds it, not a copy, for a V too large to copy on
// every read. Items are immutable once published: the caller must never
// write through it. The value stays valid (and unchanged) however long
// the caller keeps it, whatever the map does with the key since.
func (m *Map[V]) LoadPtr(key string) *V {
	h := maphash.String(m.seed, key)
	t := m.shards[h>>(64-shardBits)].table.Load()
	if t == nil {
		return nil
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return nil
		}
		if it.hash == h && it != m.tomb && it.key == key {
			// read, written out, as in Load.
			if e := it.expires; e != 0 && !farFromExpiry(e) && e <= since() {
				return nil
			}
			if it.ref.Load() == 0 {
				it.ref.Store(1)
			}
			return &it.val
		}
	}
}

// read returns a held item's value unless it expired, and marks it
// referenced.
func (m *Map[V]) read(it *item[V]) (v V, ok bool) {
	if e := it.expires; e != 0 && !farFromExpiry(e) && e <= since() {
		return v, false
	}
	if it.ref.Load() == 0 {
		it.ref.Store(1)
	}
	return it.val, true
}

// Ref remembers where a Map holds a key's item, for LoadRefs: the item's
// hash and address. It keeps nothing alive (the address is a number, only
// ever compared with the pointers the map's slots hold), so a Ref to an
// item the map has dropped costs nothing but its 16 bytes. Its zero value
// remembers nothing. It is safe for concurrent use.
type Ref struct {
	hash atomic.Uint64
	addr atomic.Uintptr
}

// Remembers reports whether r remembers an item (one LoadRefs found).
func (r *Ref) Remembers() bool { return r.addr.Load() != 0 }

// LoadRefs looks keys up as Load would, each through the Ref of the same
// index (refs is at least as long as keys), for a caller that looks the
// same keys up again and again: the item refs[i] remembers is found
// without hashing keys[i]; a key whose Ref finds nothing there is looked
// up in full, and the item found remembered. It fills vals[i] (vals is at
// least as long as keys) with the value under keys[i], and returns how
// many keys it found, stopping at the first it did not: len(keys) when
// all are held.
//
// Its answer for each key is Load's: the item refs[i] remembers is used
// only if the map holds it now, in the current table of its shard, under
// keys[i] itself. A Ref remembering another key's item, an item since
// deleted or replaced, or one whose memory was reused, finds nothing.
func (m *Map[V]) LoadRefs(keys []string, refs []Ref, vals []V) int {
	refs, vals = refs[:len(keys)], vals[:len(keys)]
	for i, key := range keys {
		r := &refs[i]
		// The item r remembers, if the current table of its shard holds
		// it under key (written out here: a call per key costs a hit more
		// than the probe does).
		var it *item[V]
		if addr := r.addr.Load(); addr != 0 {
			h := r.hash.Load()
			if t := m.shards[h>>(64-shardBits)].table.Load(); t != nil {
				for j := h & t.mask; ; j = (j + 1) & t.mask {
					s := t.slots[j].Load()
					if s == nil {
						break
					}
					if uintptr(unsafe.Pointer(s)) == addr {
						if s.key == key {
							it = s
						}
						break
					}
				}
			}
		}
		if it == nil {
			v, ok := m.loadRemember(key, r)
			if !ok {
				return i
			}
			vals[i] = v
			continue
		}
		if e := it.expires; e != 0 && !farFromExpiry(e) && e <= since() {
			return i
		}
		if it.ref.Load() == 0 {
			it.ref.Store(1)
		}
		vals[i] = it.val
	}
	return len(keys)
}

// loadRemember is Load, remembering in r the item it finds.
func (m *Map[V]) loadRemember(key string, r *Ref) (v V, ok bool) {
	h := maphash.String(m.seed, key)
	t := m.shards[h>>(64-shardBits)].table.Load()
	if t == nil {
		return v, false
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return v, false
		}
		if it.hash == h && it != m.tomb && it.key == key {
			// A concurrent loadRemember may store another item's hash
			// and address between these two stores: the pair then finds
			// nothing, or a held item under the key asked, which is
			// still right.
			r.hash.Store(h)
			r.addr.Store(uintptr(unsafe.Pointer(it)))
			return m.read(it)
		}
	}
}

// Set stores val under key (replacing any value held) charged cost plus
// ItemOverhead, and evicts other items to stay within the budget. A
// non-zero ttl makes the item expire (Load no longer returns it, and
// eviction takes it first). Set reports false, storing nothing and
// dropping any value held under key, when the item alone costs more than
// the budget. The key is copied.
func (m *Map[V]) Set(key string, val V, cost int64, ttl time.Duration) bool {
	return m.set(key, false, val, cost, ttl) != nil
}

// SetOwned is Set keeping key itself, not a copy: for a key whose bytes
// nobody writes ever again (a string the caller owns and keeps, such as
// the stored value's own copy of it).
func (m *Map[V]) SetOwned(key string, val V, cost int64, ttl time.Duration) bool {
	return m.set(key, true, val, cost, ttl) != nil
}

// SetPtr is Set (SetOwned when owned) returning the address of the value
// as the new item holds it (what LoadPtr returns for key until the key is
// set again or dropped), or nil when refused. As with LoadPtr, the caller
// must never write through it.
func (m *Map[V]) SetPtr(key string, owned bool, val V, cost int64, ttl time.Duration) *V {
	if it := m.set(key, owned, val, cost, ttl); it != nil {
		return &it.val
	}
	return nil
}

// set is Set, copying key unless owned; it returns the item stored, nil
// when refused.
func (m *Map[V]) set(key string, owned bool, val V, cost int64, ttl time.Duration) *item[V] {
	cost += ItemOverhead
	h := maphash.String(m.seed, key)
	s := &m.shards[h>>(64-shardBits)]
	if cost > m.maxCost {
		s.mu.Lock()
		s.delete(m, h, key)
		s.mu.Unlock()
		return nil
	}
	if !owned {
		key = strings.Clone(key)
	}
	it := &item[V]{hash: h, key: key, val: val, cost: cost}
	if ttl > 0 {
		it.expires = since() + int64(ttl)
		if it.expires < 0 { // overflowed: as good as never
			it.expires = math.MaxInt64
		}
	}
	// A new item's flag is clear: items never read since they were
	// stored (a scan's) go before those that were. The eviction this Set
	// may make spares the item itself.
	s.mu.Lock()
	s.put(m, it)
	s.mu.Unlock()
	if m.total.Load() > m.maxCost {
		m.evict(it)
	}
	return it
}

// Delete forgets the value under key, if any.
func (m *Map[V]) Delete(key string) {
	h := maphash.String(m.seed, key)
	s := &m.shards[h>>(64-shardBits)]
	s.mu.Lock()
	s.delete(m, h, key)
	s.mu.Unlock()
}

// Clear forgets every value and releases the tables.
func (m *Map[V]) Clear() {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		m.total.Add(-s.cost)
		s.table.Store(nil)
		s.live, s.used, s.cost, s.hand = 0, 0, 0, 0
		s.mu.Unlock()
	}
}

// Len is the number of items held (expired ones included until evicted).
func (m *Map[V]) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += s.live
		s.mu.Unlock()
	}
	return n
}

// put inserts or replaces it. Callers hold s.mu.
func (s *shard[V]) put(m *Map[V], it *item[V]) {
	t := s.table.Load()
	if t == nil || (s.used+1)*4 > len(t.slots)*3 {
		t = s.rebuild(m, s.live+1)
	}
	free := -1
	for i := it.hash & t.mask; ; i = (i + 1) & t.mask {
		old := t.slots[i].Load()
		if old == nil {
			if free < 0 {
				free = int(i)
				s.used++
			}
			break
		}
		if old == m.tomb {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		if old.hash == it.hash && old.key == it.key {
			t.slots[i].Store(it)
			s.cost += it.cost - old.cost
			m.total.Add(it.cost - old.cost)
			return
		}
	}
	t.slots[free].Store(it)
	s.live++
	s.cost += it.cost
	m.total.Add(it.cost)
}

// rebuild publishes a new table sized for n items (at most 3/8 full)
// holding the live items of the old one. Callers hold s.mu.
func (s *shard[V]) rebuild(m *Map[V], n int) *table[V] {
	size := minSlots
	for size*3 < n*8 {
		size <<= 1
	}
	t := &table[V]{mask: uint64(size - 1), slots: make([]atomic.Pointer[item[V]], size)}
	if old := s.table.Load(); old != nil {
		for i := range old.slots {
			it := old.slots[i].Load()
			if it == nil || it == m.tomb {
				continue
			}
			j := it.hash & t.mask
			for t.slots[j].Load() != nil {
				j = (j + 1) & t.mask
			}
			t.slots[j].Store(it)
		}
	}
	s.used, s.hand = s.live, 0
	s.table.Store(t)
	return t
}

// delete tombstones key's slot. Callers hold s.mu.
func (s *shard[V]) delete(m *Map[V], h uint64, key string) {
	t := s.table.Load()
	if t == nil {
		return
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return
		}
		if it != m.tomb && it.hash == h && it.key == key {
			s.remove(m, t, i, it)
			return
		}
	}
}

func (s *shard[V]) remove(m *Map[V], t *table[V], i uint64, it *item[V]) {
	t.slots[i].Store(m.tomb)
	s.live--
	s.cost -= it.cost
	m.total.Add(-it.cost)
}

// evict moves the hand until the total cost is within the budget,
// sparing keep (the item the caller just stored). It locks one shard at a
// time.
func (m *Map[V]) evict(keep *item[V]) {
	now := since()
	for idle := 0; m.total.Load() > m.maxCost && idle < 4*numShards; {
		s := &m.shards[m.hand.Add(1)%numShards]
		s.mu.Lock()
		evicted := s.evictOne(m, now, keep)
		s.mu.Unlock()
		if evicted {
			idle = 0
		} else {
			idle++
		}
	}
}

// evictOne moves the shard's hand to the first item that is expired or
// not referenced since the hand last passed, clearing the flags it
// passes, and evicts that item. It gives up (false) after one turn: an
// item whose flag it cleared gets until the hand comes back to this shard
// to be read again. Callers hold s.mu.
func (s *shard[V]) evictOne(m *Map[V], now int64, keep *item[V]) bool {
	t := s.table.Load()
	if t == nil || s.live == 0 {
		return false
	}
	for n := len(t.slots); n > 0; n-- {
		i := uint64(s.hand) & t.mask
		s.hand++
		it := t.slots[i].Load()
		if it == nil || it == m.tomb || it == keep {
			continue
		}
		if it.expires == 0 || it.expires > now {
			if it.ref.Load() != 0 {
				it.ref.Store(0)
				continue
			}
		}
		s.remove(m, t, i, it)
		return true
	}
	return false
}
