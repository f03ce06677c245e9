package clockstore

import (
	"sync"
	"sync/atomic"
	"time"
)

// Items expire on the monotonic clock, counted from the package's epoch:
// since is the time now on it. Reading it costs a hit tens of
// instructions (a vDSO call), so while the clock runs (StartClock) a
// ticker keeps a coarse copy of it, at most coarseTick behind when the
// process is not starved. An item whose expiry is more than coarseGuard
// after the coarse time is alive without further reading; one closer to
// its expiry (or past it) is checked on the real clock. A lagging ticker
// therefore never lengthens a lifetime, unless it lags by more than
// coarseGuard (the process starved of CPU for that long), and then by the
// lag less coarseGuard at most.
var epoch = time.Now()

// since is the time on the package's clock: nanoseconds since epoch, on
// the monotonic clock (time.Since of a Time with a monotonic reading reads
// nothing else).
func since() int64 { return int64(time.Since(epoch)) }

var coarse struct {
	now   atomic.Int64 // since(), as of the last tick; 0 when not running
	mu    sync.Mutex
	users int
	stop  chan struct{}
	done  chan struct{}
}

const (
	// coarseTick is how often the coarse copy is refreshed: seldom
	// enough that the ticker costs next to nothing, often enough to stay
	// well within coarseGuard (only whether an item is more than that
	// from its expiry is decided on the coarse copy).
	coarseTick = 100 * time.Millisecond
	// coarseGuard: an item this close to its expiry is checked on the
	// real clock.
	coarseGuard = int64(time.Second)
)

// farFromExpiry reports, reading no clock, that an item expiring at exp
// (on since's clock) is more than coarseGuard from its expiry by the
// coarse clock (false when the clock does not run): it has not expired.
// Otherwise the caller checks exp against since(). It inlines.
func farFromExpiry(exp int64) bool {
	c := coarse.now.Load()
	return c != 0 && exp-c > coarseGuard
}

// StartClock registers a user of the coarse clock, which runs while it
// has users: a user is a store whose items expire (the near cache's L1).
// Each StartClock is matched by a StopClock.
func StartClock() {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	coarse.users++
	if coarse.users > 1 {
		return
	}
	coarse.now.Store(max(since(), 1))
	stop, done := make(chan struct{}), make(chan struct{})
	coarse.stop, coarse.done = stop, done
	go func() {
		defer close(done)
		t := time.NewTicker(coarseTick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				coarse.now.Store(max(since(), 1))
			}
		}
	}()
}

// StopClock releases a user; the ticker stops with the last one, and
// expiry is then checked on the real clock.
func StopClock() {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	coarse.users--
	if coarse.users > 0 {
		return
	}
	close(coarse.stop)
	<-coarse.done // no tick may store after the copy is cleared
	coarse.now.Store(0)
}
