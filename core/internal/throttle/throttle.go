// Package throttle holds the lock-free "at most once per interval" gate
// that rate-limits routecache's logs, shared by the engine and the drivers.
package throttle

import (
	"sync/atomic"
	"time"
)

// Gate lets one caller through per interval; its zero value is open.
type Gate struct{ last atomic.Int64 }

// Every reports whether d has passed since the last caller it let through,
// and if so lets this one through.
func (g *Gate) Every(d time.Duration) bool {
	now := time.Now().UnixNano()
	last := g.last.Load()
	if now-last < int64(d) {
		return false
	}
	return g.last.CompareAndSwap(last, now)
}
