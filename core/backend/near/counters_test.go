package near

import (
	"fmt"
	"testing"
)

// The CLOCK keeps a counter that is being read and evicts the idle ones;
// dropped and reset counters are gone and their bytes are released.
func TestNearLocalCountersClock(t *testing.T) {
	l := newLocalCounters(10 * localCost("k00000"))
	for i := 0; i < 10; i++ {
		l.put(fmt.Sprintf("k%05d", i), nearCounter{v: uint64(i)})
	}
	for i := 10; i < 1000; i++ {
		if _, ok := l.get("k00000"); !ok {
			t.Fatalf("the counter read before every insertion was evicted at %d", i)
		}
		l.put(fmt.Sprintf("k%05d", i), nearCounter{v: uint64(i)})
		if l.len() > 10 || l.bytes() > l.budget() {
			t.Fatalf("%d counters, %d bytes for a budget of %d", l.len(), l.bytes(), l.budget())
		}
	}
	if c, ok := l.get("k00999"); !ok || c.v != 999 {
		t.Fatalf("newest counter: %v %v", c, ok)
	}
	l.del("k00999")
	if _, ok := l.get("k00999"); ok {
		t.Fatal("dropped counter still held")
	}
	l.reset()
	if l.len() != 0 || l.bytes() != 0 {
		t.Fatalf("after reset: %d counters, %d bytes", l.len(), l.bytes())
	}
}
