package memory

import (
	"sync/atomic"

	"github.com/routecache/routecache/core/backend"
)

// Held is an entry as the memory store holds it, with what a hit checks
// resolved when it was stored: the counters of its snapshot (so that
// HeldUnchanged reads them without hashing their names) and whether it is
// held under its own Key. It is immutable once stored.
type Held struct {
	e *backend.Entry
	// gen is counterMap.created, read before the counters were resolved.
	// While created still holds it, no counter was created since: a name
	// ctrs has no counter for still has none (it reads BaseCounter), and
	// every counter ctrs holds is the name's (counters are never removed).
	// A counter created during the resolution, and missed by it, moves
	// created after it is published, so after gen was read.
	gen uint64
	// ctrs[i] is the counter of e.Counters[i] when the entry was stored,
	// nil for a name that had none; ctrs is nil when none had one.
	ctrs []*atomic.Uint64
	// ownKey is set when the entry is held under e.Key itself.
	ownKey bool
}

// heldBytes is what a Held adds to an entry's cost, besides 8 bytes per
// counter resolved: its own allocation (size class 48).
const heldBytes = 48

// hold resolves e's counters for its Held under key.
func (m *Backend) hold(key string, e *backend.Entry) *Held {
	cm := &m.counterM
	h := &Held{e: e, gen: cm.created.Load(), ownKey: key == e.Key}
	for i := range e.Counters {
		if c := cm.get(e.Counters[i].Name); c != nil {
			if h.ctrs == nil {
				h.ctrs = make([]*atomic.Uint64, len(e.Counters))
			}
			h.ctrs[i] = c
		}
	}
	return h
}

// memSize is the heap a Held takes besides its entry.
func (h *Held) memSize() int64 { return heldBytes + 8*int64(len(h.ctrs)) }

// Entry is the entry held.
func (h *Held) Entry() *backend.Entry { return h.e }

// OwnKey reports whether the entry is held under its own Key: found by
// Held(key), its Key is key, without comparing them again.
func (h *Held) OwnKey() bool { return h.ownKey }

// Held returns what is held under key, or nil, without reading any
// counter: a caller checks the entry's counters after it (HeldUnchanged).
func (m *Backend) Held(key string) *Held {
	h, _ := m.entries.Load(key)
	return h
}

// HeldUnchanged is Unchanged(h.Entry().Counters): whether every counter
// of the entry's snapshot holds its snapshot value now (a missing one
// reads BaseCounter), and none is 0. Unless a counter was created since
// the entry was stored, it reads the counters resolved then, hashing no
// name; otherwise it looks every name up, as Unchanged does.
func (m *Backend) HeldUnchanged(h *Held) bool {
	snap := h.e.Counters
	if m.counterM.created.Load() != h.gen {
		return m.Unchanged(snap)
	}
	if h.ctrs == nil {
		for i := range snap {
			if snap[i].Value != backend.BaseCounter {
				return false
			}
		}
		return true
	}
	ctrs := h.ctrs[:len(snap)]
	for i := range snap {
		v := uint64(backend.BaseCounter)
		if c := ctrs[i]; c != nil {
			v = c.Load()
		}
		if v != snap[i].Value || v == 0 {
			return false
		}
	}
	return true
}
