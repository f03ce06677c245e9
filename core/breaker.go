package core

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// Defaults of BreakerConfig's zero fields.
const (
	// DefaultBreakerFailures opens a breaker after this many consecutive failures.
	DefaultBreakerFailures = 5
	// DefaultBreakerCooldown is how long an open breaker skips its backend
	// before letting one probe through.
	DefaultBreakerCooldown = time.Second
)

// BreakerConfig tunes the circuit breaker kept per backend: after Failures
// consecutive failed operations it opens, and requests skip the backend
// (their handlers run uncached) for Cooldown; then one request probes it,
// closing the breaker on success and re-opening it on failure.
type BreakerConfig struct {
	// Failures is the number of consecutive failures that opens the
	// breaker. 0 means DefaultBreakerFailures (5); negative disables it.
	Failures int
	// Cooldown is how long the breaker stays open. 0 means
	// DefaultBreakerCooldown (1 s).
	Cooldown time.Duration
}

// BreakerState is the state of a backend's circuit breaker, as reported
// in Stats.Breaker.
type BreakerState string

// Breaker states, as reported in Stats.Breaker.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

const (
	stClosed int32 = iota
	stOpen
	stHalfOpen
)

// breaker is lock-free: the hit path pays one atomic load.
type breaker struct {
	failures  int32
	cooldown  int64
	state     atomic.Int32
	fails     atomic.Int32
	openUntil atomic.Int64
	opened    atomic.Uint64 // times it opened
}

func newBreaker(cfg BreakerConfig) *breaker {
	if cfg.Failures < 0 {
		return nil
	}
	b := &breaker{failures: int32(cfg.Failures), cooldown: int64(cfg.Cooldown)}
	if b.failures == 0 {
		b.failures = DefaultBreakerFailures
	}
	if b.cooldown == 0 {
		b.cooldown = int64(DefaultBreakerCooldown)
	}
	return b
}

// allow reports whether an operation may use the backend now. When the
// cooldown is over, one caller gets through as the probe. A probe that
// never reports back (its request was cancelled, or skipped the backend)
// is replaced by another after a further cooldown, so the breaker cannot
// stay half-open for ever.
func (b *breaker) allow() bool {
	// Written to inline: a nil breaker (the memory store) or a closed one
	// costs no call.
	return b == nil || b.state.Load() == stClosed || b.allowSlow()
}

// allowSlow is allow for an open or half-open breaker.
func (b *breaker) allowSlow() bool {
	switch b.state.Load() {
	case stClosed:
		return true
	case stOpen:
		now := time.Now().UnixNano()
		if now < b.openUntil.Load() || !b.state.CompareAndSwap(stOpen, stHalfOpen) {
			return false
		}
		b.openUntil.Store(now + b.cooldown) // the probe's deadline
		return true
	default: // a probe is out
		until := b.openUntil.Load()
		now := time.Now().UnixNano()
		return now >= until && b.openUntil.CompareAndSwap(until, now+b.cooldown)
	}
}

// done records an operation's outcome. Only backend failures count;
// callers pass nil for "not found", corrupt values and the like. An
// operation that never reached the backend because it queued too long for
// one of its own process's connections (backend.ErrQueued: a burst, not a dead
// server) counts neither way.
func (b *breaker) done(err error) {
	if b != nil { // inlined: nothing to do for the memory store's nil breaker
		b.record(err)
	}
}

// succeeded is done(nil): a success closes the breaker and clears its
// failures. It inlines: a successful read costs no call, only the two
// loads that find a healthy store's breaker closed.
func (b *breaker) succeeded() {
	if b != nil {
		if b.fails.Load() != 0 {
			b.fails.Store(0)
		}
		if b.state.Load() != stClosed {
			b.state.Store(stClosed)
		}
	}
}

// record is done for a breaker.
func (b *breaker) record(err error) {
	if err == nil { // first: errors.Is costs a call, even for nil
		b.succeeded()
		return
	}
	if errors.Is(err, backend.ErrQueued) {
		return
	}
	n := b.fails.Add(1)
	st := b.state.Load()
	if st == stHalfOpen || (st == stClosed && n >= b.failures) {
		b.openUntil.Store(time.Now().UnixNano() + b.cooldown)
		if b.state.Swap(stOpen) != stOpen {
			b.opened.Add(1)
		}
	}
}

func (b *breaker) String() string { return string(b.State()) }

// State returns the breaker's state; a nil breaker (the memory store has
// none) is closed.
func (b *breaker) State() BreakerState {
	if b == nil {
		return BreakerClosed
	}
	switch b.state.Load() {
	case stOpen:
		return BreakerOpen
	case stHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}
