package main

import (
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/internal/exampletest"
)

func TestEcho5Example(t *testing.T) {
	rc, err := newCache()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var renders atomic.Int64
	exampletest.HelloScenario(t, newRouter(rc, &renders), renders.Load)
}

// run listens, announces the address and serves until cancelled.
func TestEcho5Run(t *testing.T) {
	exampletest.SmokeRun(t, run)
}
