// Package testhook lets the tests of routecache observe the engine's
// waits without reading goroutine stack dumps: the engine reports here when
// a call starts and stops waiting, and tests read how many wait now.
//
// Counting is off until a test calls Enable (in a test binary only); until
// then each report costs the engine one atomic load.
package testhook

import "sync/atomic"

// Kind is what a call waits for.
type Kind int

const (
	// Flight is a wait for another call's fill of the same key in this
	// process.
	Flight Kind = iota
	// Lease is a wait for another instance's fill (polling the shared
	// store while that instance holds the key's lease).
	Lease
	kinds
)

var (
	enabled atomic.Bool
	waiting [kinds]atomic.Int64
)

// Enable turns counting on for the rest of the process. Calls already
// waiting when it is called are not counted.
func Enable() { enabled.Store(true) }

// Waiting returns how many calls wait for k now, across the process.
func Waiting(k Kind) int { return int(waiting[k].Load()) }

// Enter reports that a call starts waiting for k. It returns whether the
// wait is counted: if so, the engine calls Leave when the wait ends.
func Enter(k Kind) bool {
	if !enabled.Load() {
		return false
	}
	waiting[k].Add(1)
	return true
}

// Leave reports the end of a wait Enter counted.
func Leave(k Kind) { waiting[k].Add(-1) }
