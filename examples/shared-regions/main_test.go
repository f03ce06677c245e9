package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func do(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	return w
}

func xc(w *httptest.ResponseRecorder) string { return w.Header().Get("X-Cache") }

// A fill through Gin is a HIT through Echo, and the other way round;
// an invalidation through either reaches both.
func TestSharedRegions(t *testing.T) {
	a, err := newApp()
	if err != nil {
		t.Fatal(err)
	}
	defer a.rc.Close()

	g := do(t, a.gin, "GET", "/articles/1", "")
	e := do(t, a.echo, "GET", "/articles/1", "")
	if xc(g) != "MISS" || xc(e) != "HIT" || e.Body.String() != g.Body.String() || g.Body.String() != "<h1>First</h1>\n" {
		t.Fatalf("gin %s %q, echo %s %q", xc(g), g.Body.String(), xc(e), e.Body.String())
	}
	if ct := e.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("replayed Content-Type %q", ct)
	}
	e = do(t, a.echo, "GET", "/articles/2", "")
	g = do(t, a.gin, "GET", "/articles/2", "")
	if xc(e) != "MISS" || xc(g) != "HIT" || g.Body.String() != "<h1>Second</h1>\n" {
		t.Fatalf("echo %s, gin %s %q", xc(e), xc(g), g.Body.String())
	}
	if n := a.data.renders.Load(); n != 2 {
		t.Fatalf("renders %d, want 2 (one per article)", n)
	}

	// Echo changes article 1; Gin's next answer is fresh.
	if w := do(t, a.echo, "PUT", "/articles/1", "Updated"); w.Code != http.StatusNoContent {
		t.Fatalf("PUT: %d", w.Code)
	}
	g = do(t, a.gin, "GET", "/articles/1", "")
	if xc(g) != "MISS" || g.Body.String() != "<h1>Updated</h1>\n" {
		t.Fatalf("gin after echo's PUT: %s %q", xc(g), g.Body.String())
	}
	if e := do(t, a.echo, "GET", "/articles/1", ""); xc(e) != "HIT" || e.Body.String() != "<h1>Updated</h1>\n" {
		t.Fatalf("echo: %s %q", xc(e), e.Body.String())
	}
	// The PUT's tag "articles" reached article 2 too.
	if e := do(t, a.echo, "GET", "/articles/2", ""); xc(e) != "MISS" {
		t.Fatalf("article 2 after invalidating tag articles: %s", xc(e))
	}
	st := a.rc.Stats()["articles"]
	if st.Hits != 3 || st.Misses != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// run starts both servers and announces both addresses.
func TestSharedRegionsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", "127.0.0.1:0", pw); pw.Close() }()
	br := bufio.NewReader(pr)
	var bases []string
	for _, prefix := range []string{"listening on ", "echo listening on "} {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		base, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		if !ok {
			t.Fatalf("line %q, want prefix %q", line, prefix)
		}
		bases = append(bases, base)
	}
	go io.Copy(io.Discard, br)
	for i, want := range []string{"MISS", "HIT"} { // Gin fills, Echo hits
		res, err := http.Get(bases[i] + "/articles/1")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Header.Get("X-Cache") != want {
			t.Fatalf("%s: X-Cache %q, want %s", bases[i], res.Header.Get("X-Cache"), want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
