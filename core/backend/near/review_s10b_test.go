package near

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
)

// countHandler counts the records logged at Warn or above.
type countHandler struct{ n *atomic.Int32 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// A cluster master whose guard keeps failing (the node gone, its
// connection refused: listen retries every 50 ms, pings every second)
// logs its loss once, not on every retry, until it is up again.
func TestGuardStillDownLogsOnce(t *testing.T) {
	f := newSnapFixture(t)
	n := f.n
	var warns atomic.Int32
	n.log = slog.New(countHandler{&warns})
	n.coherent.Store(true)
	g := &guard{up: true}
	n.guardsDown.Store(0)
	for range 20 {
		n.guardDown(g, errors.New("connection refused"))
	}
	if got := warns.Load(); got != 1 {
		t.Fatalf("%d warnings for one guard down through 20 retries, want 1", got)
	}
	if got := n.guardsDown.Load(); got != 1 {
		t.Fatalf("guardsDown %d, want 1", got)
	}
	n.guardUp(g)
	n.guardDown(g, errors.New("connection refused"))
	if got := warns.Load(); got != 2 {
		t.Fatalf("%d warnings after it came back and went down again, want 2", got)
	}
}
