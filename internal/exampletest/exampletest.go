// Package exampletest holds the checks shared by the examples' tests: the
// gin and echo examples serve the same routes, so they pass the same
// scenario.
package exampletest

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Do serves one request to h and returns the recorded response.
func Do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

// HelloScenario checks the /hello/:name example routes: MISS then HIT,
// one entry per name, a POST invalidating only its own name. renders
// reports how many times the handler ran.
func HelloScenario(t *testing.T, h http.Handler, renders func() int64) {
	t.Helper()
	do := Do
	miss := do(t, h, "GET", "/hello/ada")
	hit := do(t, h, "GET", "/hello/ada")
	if miss.Header().Get("X-Cache") != "MISS" || hit.Header().Get("X-Cache") != "HIT" || hit.Body.String() != miss.Body.String() {
		t.Fatalf("MISS then HIT expected: %q %q / %q", miss.Header().Get("X-Cache"), hit.Header().Get("X-Cache"), hit.Body.String())
	}
	if do(t, h, "GET", "/hello/bob").Header().Get("X-Cache") != "MISS" {
		t.Fatal("another name is another entry")
	}
	if renders() != 2 {
		t.Fatalf("renders %d, want 2", renders())
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

// SmokeRun starts an example's run on a free port, reads the address it
// announces, checks MISS then HIT over real HTTP, and stops it.
func SmokeRun(t *testing.T, run func(context.Context, string, io.Writer) error) {
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
