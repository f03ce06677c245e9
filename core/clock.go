package core

import (
	"sync"
	"sync/atomic"
	"time"
)

// The hit path reads the time once per request, and on virtualised
// machines time.Now can cost tens of nanoseconds (68 ns measured on the
// development VM, whose clock source is kvm-clock). While any Cache is
// open, a ticker keeps a coarse copy of the wall clock, 1 ms behind at
// most when the process is not starved; freshness decisions and Age use
// it, except within clockGuard of an entry's expiry (and after it), where
// the real clock decides, so a lagging ticker never extends a lifetime.
// Timestamps stored in entries (created, expiry) use time.Now.
var coarse struct {
	now   atomic.Int64
	mu    sync.Mutex
	users int
	stop  chan struct{}
}

const coarseTick = time.Millisecond

// clockGuard: an entry this close to expiry is checked on the real clock.
const clockGuard = time.Second

// startClock registers a user of the coarse clock.
func startClock() {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	coarse.users++
	if coarse.users > 1 {
		return
	}
	coarse.now.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	coarse.stop = stop
	go func() {
		t := time.NewTicker(coarseTick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				tick(stop, now)
			}
		}
	}()
}

// stopClock releases a user; the ticker stops with the last one.
func stopClock() {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	coarse.users--
	if coarse.users == 0 {
		close(coarse.stop)
		coarse.stop = nil
		coarse.now.Store(0)
	}
}

// tick stores a tick of the ticker started with stop, unless that ticker
// was stopped meanwhile: a tick received just before stopClock must not
// land after it, leaving a frozen time that nowNano would return for good.
func tick(stop chan struct{}, now time.Time) {
	coarse.mu.Lock()
	defer coarse.mu.Unlock()
	if coarse.stop == stop {
		coarse.now.Store(now.UnixNano())
	}
}

// nowNano returns the coarse clock, or the real one when no Cache is open.
// Small enough to inline: the real clock is read in a call of its own.
func nowNano() int64 {
	if v := coarse.now.Load(); v != 0 {
		return v
	}
	return realNano()
}

// realNano is the real clock in Unix nanoseconds (nowNano's fallback).
func realNano() int64 { return time.Now().UnixNano() }
