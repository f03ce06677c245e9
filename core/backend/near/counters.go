package near

import "github.com/routecache/routecache/core/backend/internal/clockstore"

// localCounters is the near cache's copy of the counter values it read,
// bounded by a byte budget (a share of near_max_bytes) with CLOCK
// eviction (clockstore): a counter read since the hand last passed
// survives one more turn. Eviction only ever forgets a value, so the next
// lookup needing it reads it from the backend again; nothing is assumed
// about a counter that is not held.
//
// Reads take no lock (a hit writes at most the item's reference flag,
// once). Writes are safe for concurrent use too, but the near cache
// serialises put, del and reset under its mutex, so that a value read
// before an invalidation is never installed after that invalidation's
// drop (the epoch check in install).
type localCounters struct {
	m *clockstore.Map[nearCounter]
}

// localCounterOverhead is what one held counter costs besides its name's
// bytes and the store's clockstore.ItemOverhead: the allocation rounding
// of its name's copy (measured with TestNearLocalCountersBounded).
const localCounterOverhead = 16

// localCost is what a held counter is charged against the budget.
func localCost(name string) int64 {
	return int64(len(name)) + localCounterOverhead + clockstore.ItemOverhead
}

func newLocalCounters(budget int64) localCounters {
	return localCounters{m: clockstore.New[nearCounter](budget)}
}

// get returns the counter's value and when it was read; it marks the
// counter as recently used. It takes no lock.
func (l *localCounters) get(name string) (nearCounter, bool) { return l.m.Load(name) }

// getRefs is get for each of names, through the refs kept with them
// (clockstore.Map.LoadRefs: no hashing of a name whose ref finds its
// counter); it fills cs and returns how many it found, stopping at the
// first it did not. Its answer for each name is get's.
func (l *localCounters) getRefs(names []string, refs []clockstore.Ref, cs []nearCounter) int {
	return l.m.LoadRefs(names, refs, cs)
}

// put stores a counter's value, evicting others to stay within budget.
func (l *localCounters) put(name string, c nearCounter) {
	l.m.Set(name, c, localCost(name)-clockstore.ItemOverhead, 0)
}

// del forgets a counter.
func (l *localCounters) del(name string) { l.m.Delete(name) }

// reset forgets every counter and releases their memory.
func (l *localCounters) reset() { l.m.Clear() }

func (l *localCounters) len() int { return l.m.Len() }

// bytes is the cost charged now; budget the most it may be.
func (l *localCounters) bytes() int64  { return l.m.Cost() }
func (l *localCounters) budget() int64 { return l.m.MaxCost() }
