//go:build linux

package core_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core"
)

// recordingHandler keeps the messages of the records it receives.
type recordingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value); return true })
	h.mu.Lock()
	h.msgs = append(h.msgs, sb.String())
	h.mu.Unlock()
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) matching(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.msgs {
		if strings.HasPrefix(m, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// startRedis starts a redis-server of this test's own on a free port and
// returns its address and process (stopped at cleanup, by its PID).
func startRedis(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found under CI=true")
		}
		t.Skip("redis-server not found")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	for deadline := time.Now().Add(20 * time.Second); admin.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer", addr)
		}
	}
	return addr, cmd
}

// captureStderr redirects file descriptor 2 into a pipe until the returned
// function is called, which restores it and returns the lines written.
func captureStderr(t *testing.T) func() []string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}()
	var once sync.Once
	restore := func() []string {
		once.Do(func() {
			_ = syscall.Dup3(saved, 2, 0)
			syscall.Close(saved)
			w.Close()
			<-done
			r.Close()
		})
		return lines
	}
	t.Cleanup(func() { restore() })
	return restore
}

// During a Redis outage, go-redis's own log lines reach the Cache's slog
// logger, at most about one a second, and nothing reaches stderr.
func TestRedisClientLogsGoToCacheLogger(t *testing.T) {
	addr, srv := startRedis(t)
	h := &recordingHandler{}
	c, err := core.New(core.Config{Logger: slog.New(h), Regions: map[string]core.RegionConfig{
		"near":  {Backend: "redis://" + addr + "/0?near_max_bytes=1MiB", Prefix: uniquePrefix(t)},
		"plain": {Backend: "redis://" + addr + "/0", Prefix: uniquePrefix(t)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }
	var routes []*core.Route
	for _, name := range []string{"near", "plain"} {
		rt, err := c.Route(name, core.Tags("t"))
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, rt)
		serveOnce(rt, "/x", noParams, body)
		if w := serveOnce(rt, "/x", noParams, body); w.Header().Get("X-Cache") != "HIT" {
			t.Fatalf("%s: no hit before the outage: %s", name, w.Header().Get("X-Cache"))
		}
	}

	restore := captureStderr(t)
	if err := srv.Process.Kill(); err != nil { // our own server, by PID
		restore()
		t.Fatal(err)
	}
	_ = srv.Wait()
	// Three seconds of traffic and invalidations against the dead server.
	start := time.Now()
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		for _, rt := range routes {
			serveOnce(rt, fmt.Sprintf("/y/%d", i), noParams, body)
		}
		_ = c.InvalidateTags(context.Background(), "t")
		time.Sleep(10 * time.Millisecond) // pacing of the traffic, not a synchronisation
	}
	elapsed := time.Since(start)
	stderr := restore()
	client := h.matching("routecache: redis client")
	t.Logf("outage of %v: %d lines on stderr, %d go-redis lines through the Cache's logger, %d records in all",
		elapsed.Round(time.Millisecond), len(stderr), len(client), len(h.matching("")))
	for i, l := range stderr[:min(len(stderr), 5)] {
		t.Logf("stderr %d: %s", i, l)
	}
	for i, l := range client[:min(len(client), 3)] {
		t.Logf("slog %d: %s", i, l)
	}
	if len(stderr) != 0 {
		t.Fatalf("%d lines reached stderr during the outage, want them all in the Cache's logger", len(stderr))
	}
	if len(client) == 0 {
		t.Fatal("no go-redis line reached the Cache's logger")
	}
	if limit := int(elapsed/time.Second) + 2; len(client) > limit {
		t.Fatalf("%d go-redis lines in %v: not rate-limited (at most %d)", len(client), elapsed, limit)
	}
}
