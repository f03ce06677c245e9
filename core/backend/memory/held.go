package memory

import (
	"sync/atomic"

	"github.com/routecache/routecache/core/backend"
)

// Held is an entry as the memory store holds it, with what a hit checks
// resolved when it was stored: the counters of its snapshot (so that
// HeldUnchanged reads them without hashing their names) and whether it is
// held under its own Key. It is immutable once stored. The store holds it
// in its item (clockstore.Map.LoadPtr), not in an allocation of its own.
type Held struct {
	e *backend.Entry
	// gen is counterMap.created, read before the counters were resolved.
	// While created still holds it, no counter was created since: a name
	// that had no counter then still has none (it reads BaseCounter), and
	// every counter in refs is its name's (counters are never removed).
	// A counter created during the resolution, and missed by it, moves
	// created after it is published, so after gen was read.
	gen uint64
	// refs are the counters of the snapshot that existed when the entry
	// was stored, each with its snapshot value (never 0: moved is set
	// instead).
	refs []heldCounter
	// moved is set when the snapshot was found changed as it was
	// resolved: a name without a counter whose value is not BaseCounter,
	// a value of 0.
	moved bool
	// none is set when no counter of the snapshot existed and it was
	// found unchanged (no refs, not moved).
	none bool
	// ownKey is set when the entry is held under e.Key itself.
	ownKey bool
}

// heldCounter is a counter of a Held's snapshot and its value there.
type heldCounter struct {
	c *atomic.Uint64
	v uint64
}

// heldBytes is what a Held adds to an entry's cost, besides 16 bytes per
// counter resolved: what it adds to the store's item (the item holding
// a Held takes the 96-byte size class, where clockstore.ItemOverhead
// counts 64 for an item holding a pointer).
const heldBytes = 32

// hold resolves e's counters for its Held under key.
func (m *Backend) hold(key string, e *backend.Entry) (h Held) {
	cm := &m.counterM
	h = Held{e: e, gen: cm.created.Load(), ownKey: key == e.Key}
	for _, s := range e.Counters {
		// get, its filter written out (as in Counters): most counters of
		// a new entry were never created.
		var c *atomic.Uint64
		if qh := quickHash(s.Name); cm.exists[qh>>6&63].Load()&(1<<(qh&63)) != 0 {
			c = cm.find(s.Name)
		}
		switch {
		case s.Value == 0 || c == nil && s.Value != backend.BaseCounter:
			h.moved = true
		case c != nil:
			h.refs = append(h.refs, heldCounter{c, s.Value})
		}
	}
	h.none = len(h.refs) == 0 && !h.moved
	return h
}

// memSize is the heap a Held takes besides its entry.
func (h *Held) memSize() int64 { return heldBytes + 16*int64(cap(h.refs)) }

// Entry is the entry held.
func (h *Held) Entry() *backend.Entry { return h.e }

// OwnKey reports whether the entry is held under its own Key: found by
// Held(key), its Key is key, without comparing them again.
func (h *Held) OwnKey() bool { return h.ownKey }

// Held returns what is held under key, or nil, without reading any
// counter: a caller checks the entry's counters after it (HeldUnchanged).
func (m *Backend) Held(key string) *Held {
	return m.entries.LoadPtr(key)
}

// HeldUnchanged is Unchanged(h.Entry().Counters): whether every counter
// of the entry's snapshot holds its snapshot value now (a missing one
// reads BaseCounter), and none is 0. Unless a counter was created since
// the entry was stored, it reads only the counters that existed then,
// hashing no name; otherwise it looks every name up, as Unchanged does.
// Written to inline when none of them existed.
func (m *Backend) HeldUnchanged(h *Held) bool {
	if h.none && m.counterM.created.Load() == h.gen {
		return true
	}
	return m.heldUnchanged(h)
}

// heldUnchanged is HeldUnchanged past its first case.
func (m *Backend) heldUnchanged(h *Held) bool {
	if m.counterM.created.Load() != h.gen {
		return m.Unchanged(h.e.Counters)
	}
	if h.moved {
		return false
	}
	for i := range h.refs {
		if r := &h.refs[i]; r.c.Load() != r.v {
			return false
		}
	}
	return true
}
