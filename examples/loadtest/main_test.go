package main

import (
	"testing"
	"time"
)

// TestRunSmoke drives each in-process variant briefly: every request
// succeeds, and the cached variant calls its origin once (the warm-up).
func TestRunSmoke(t *testing.T) {
	for _, v := range []variant{{"uncached", ""}, {"memory", "memory://"}} {
		rps, _, _, origin, err := run(v, 200*time.Millisecond, 4)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if rps <= 0 {
			t.Fatalf("%s: no throughput", v.name)
		}
		if v.backend != "" && origin != 1 {
			t.Fatalf("%s: %d origin calls, want 1", v.name, origin)
		}
		if v.backend == "" && origin < 2 {
			t.Fatalf("uncached: %d origin calls", origin)
		}
	}
}
