package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func TestGinExample(t *testing.T) {
	rc, err := newCache()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var renders atomic.Int64
	h := newRouter(rc, &renders)

	miss := do(t, h, "GET", "/hello/ada")
	hit := do(t, h, "GET", "/hello/ada")
	if miss.Header().Get("X-Cache") != "MISS" || hit.Header().Get("X-Cache") != "HIT" || hit.Body.String() != miss.Body.String() {
		t.Fatalf("MISS then HIT expected: %q %q / %q", miss.Header().Get("X-Cache"), hit.Header().Get("X-Cache"), hit.Body.String())
	}
	if do(t, h, "GET", "/hello/bob").Header().Get("X-Cache") != "MISS" {
		t.Fatal("another name is another entry")
	}
	if renders.Load() != 2 {
		t.Fatalf("renders %d, want 2", renders.Load())
	}
	if w := do(t, h, "POST", "/hello/ada"); w.Code != http.StatusNoContent {
		t.Fatalf("POST: %d", w.Code)
	}
	w := do(t, h, "GET", "/hello/ada")
	if w.Header().Get("X-Cache") != "MISS" || !strings.Contains(w.Body.String(), "render #3") {
		t.Fatalf("after invalidation: %q %q", w.Header().Get("X-Cache"), w.Body.String())
	}
	if do(t, h, "GET", "/hello/bob").Header().Get("X-Cache") != "HIT" {
		t.Fatal("invalidating ada must leave bob cached")
	}
}

// run listens, announces the address and serves until cancelled.
func TestGinRun(t *testing.T) {
	smokeRun(t, run)
}

func smokeRun(t *testing.T, run func(context.Context, string, io.Writer) error) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	go io.Copy(io.Discard, pr)
	for _, want := range []string{"MISS", "HIT"} {
		res, err := http.Get(base + "/hello/smoke")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("X-Cache") != want {
			t.Fatalf("GET: %d %s, want 200 %s", res.StatusCode, res.Header.Get("X-Cache"), want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
