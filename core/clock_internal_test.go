package core

import (
	"testing"
	"time"
)

// A tick received by a ticker that stopClock has stopped meanwhile is
// dropped: stored after the stop, it would freeze the coarse time that
// nowNano returns until the next Cache opens.
func TestTickOfAStoppedTickerIsDropped(t *testing.T) {
	startClock()
	defer stopClock()
	past := time.Unix(1, 0)
	tick(make(chan struct{}), past) // a ticker's stop channel, since closed and replaced
	if coarse.now.Load() == past.UnixNano() {
		t.Fatal("a stopped ticker's tick was stored")
	}
	if d := time.Since(time.Unix(0, nowNano())); d > time.Minute || d < -time.Minute {
		t.Fatalf("nowNano is %v off the real clock", d)
	}
}
