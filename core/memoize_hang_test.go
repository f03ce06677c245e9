package core_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// A memoized function that ignores its context holds neither the callers
// that joined its fill (past FillTimeout they fail with the fill's deadline,
// without calling fn: calling it from every waiter would pile onto whatever
// the fill is stuck on) nor Close
// (bounded by the longest FillTimeout plus a second). The 10 s bounds below
// only detect a hang; they are not performance assertions.
func TestMemoStuckFillDoesNotHang(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {FillTimeout: 100 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	defer close(block)
	started := make(chan struct{})
	go core.Load(context.Background(), rc, "r", "k", func(ctx context.Context) (string, error) {
		close(started)
		<-block // ignores ctx
		return "v", nil
	})
	<-started
	got := make(chan error, 1)
	go func() {
		v, err := core.Load(context.Background(), rc, "r", "k", func(ctx context.Context) (string, error) { return "own", nil })
		if v != "" {
			err = fmt.Errorf("waiter got %q: it called fn itself", v)
		}
		got <- err
	}()
	select {
	case err := <-got:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiter: %v, want the fill's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter hung on a fill that ignores its context")
	}
	closed := make(chan struct{})
	go func() { rc.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a fill that ignores its context")
	}
}
