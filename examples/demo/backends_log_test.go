package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The "demo ready" line names the backends the Cache really uses: those
// of a -settings file too, not only -backend's, and never a password.
func TestDemoLogsTheBackendsInUse(t *testing.T) {
	file := filepath.Join(t.TempDir(), "demo.ini")
	ini := "cache.regions = articles, short\n" +
		"cache.articles.backend = memory://?max_bytes=8MiB\n" +
		"cache.short.backend = memory://?max_bytes=4MiB\n"
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	_, rc, err := newServer(config{Framework: "nethttp", Settings: file, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	got := backendsInUse(rc)
	for _, want := range []string{"articles=memory://?max_bytes=8MiB", "short=memory://?max_bytes=4MiB"} {
		if !strings.Contains(got, want) {
			t.Errorf("backends %q, want %q in it", got, want)
		}
	}
	if got := displayBackend("redis://user:s3cret@127.0.0.1:6379/0"); strings.Contains(got, "s3cret") || !strings.HasPrefix(got, "redis://user:") {
		t.Errorf("displayBackend shows %q", got)
	}
	if got := displayBackend(""); got != "memory:// (embedded)" {
		t.Errorf("the default backend shows as %q", got)
	}
}
