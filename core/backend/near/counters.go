package near

import (
	"strings"
	"sync/atomic"
)

// localCounters is the near cache's copy of the counter values it read,
// bounded by a byte budget (a share of near_max_bytes) with CLOCK
// eviction: a counter read since the hand last passed survives one more
// turn. Eviction only ever forgets a value, so the next lookup needing it
// reads it from the backend again; nothing is assumed about a counter
// that is not held. Not safe for concurrent use on its own: the near
// cache's lock guards it (get under the read lock, the rest under the
// write lock).
type localCounters struct {
	budget int64 // bytes the counters may hold
	bytes  int64 // bytes charged now
	idx    map[string]int32
	slots  []localSlot
	free   []int32
	hand   int
}

type localSlot struct {
	name    string
	v       uint64
	checked int64
	ref     uint32 // read since the hand passed (atomic: set under the read lock)
	used    bool
}

// localCounterOverhead is what one held counter costs besides its name's
// bytes: its slot, the string header and allocation rounding of its
// name, and its share of the index map (measured: about 160 bytes with a
// 40-byte name, see TestNearLocalCountersBounded).
const localCounterOverhead = 128

func localCost(name string) int64 { return int64(len(name)) + localCounterOverhead }

func newLocalCounters(budget int64) localCounters {
	return localCounters{budget: budget, idx: map[string]int32{}}
}

// get returns the counter's value and when it was read; it marks the
// counter as recently used. Callers hold at least the read lock.
func (l *localCounters) get(name string) (nearCounter, bool) {
	i, ok := l.idx[name]
	if !ok {
		return nearCounter{}, false
	}
	s := &l.slots[i]
	if atomic.LoadUint32(&s.ref) == 0 {
		atomic.StoreUint32(&s.ref, 1)
	}
	return nearCounter{v: s.v, checked: s.checked}, true
}

// put stores a counter's value, evicting others to stay within budget.
// Callers hold the write lock.
func (l *localCounters) put(name string, c nearCounter) {
	if i, ok := l.idx[name]; ok {
		s := &l.slots[i]
		s.v, s.checked = c.v, c.checked
		return
	}
	cost := localCost(name)
	if cost > l.budget {
		return
	}
	for l.bytes+cost > l.budget && len(l.idx) > 0 {
		l.evictOne()
	}
	var i int32
	if n := len(l.free); n > 0 {
		i, l.free = l.free[n-1], l.free[:n-1]
	} else {
		l.slots = append(l.slots, localSlot{})
		i = int32(len(l.slots) - 1)
	}
	name = strings.Clone(name)
	l.slots[i] = localSlot{name: name, v: c.v, checked: c.checked, used: true}
	l.idx[name] = i
	l.bytes += cost
}

// evictOne frees the first slot the hand finds not recently read.
func (l *localCounters) evictOne() {
	for {
		if l.hand >= len(l.slots) {
			l.hand = 0
		}
		s := &l.slots[l.hand]
		l.hand++
		if !s.used {
			continue
		}
		if atomic.LoadUint32(&s.ref) != 0 {
			atomic.StoreUint32(&s.ref, 0)
			continue
		}
		l.remove(int32(l.hand - 1))
		return
	}
}

func (l *localCounters) remove(i int32) {
	s := &l.slots[i]
	delete(l.idx, s.name)
	l.bytes -= localCost(s.name)
	*s = localSlot{}
	l.free = append(l.free, i)
}

// del forgets a counter. Callers hold the write lock.
func (l *localCounters) del(name string) {
	if i, ok := l.idx[name]; ok {
		l.remove(i)
	}
}

// reset forgets every counter and releases their memory. Callers hold
// the write lock.
func (l *localCounters) reset() {
	*l = newLocalCounters(l.budget)
}

func (l *localCounters) len() int { return len(l.idx) }
