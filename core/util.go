package core

import (
	"sync/atomic"
	"time"
)

// atomicTime is a lock-free "at most once per interval" gate.
type atomicTime struct{ last atomic.Int64 }

func (a *atomicTime) every(d time.Duration) bool {
	now := time.Now().UnixNano()
	last := a.last.Load()
	if now-last < int64(d) {
		return false
	}
	return a.last.CompareAndSwap(last, now)
}
