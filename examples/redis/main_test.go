package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// testRedis returns the Redis address the test command exported in
// ROUTECACHE_TEST_REDIS (`make test` starts one). Outside CI a missing
// server skips the test; under CI=true it fails it.
func testRedis(t *testing.T) string {
	t.Helper()
	v := os.Getenv("ROUTECACHE_TEST_REDIS")
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ROUTECACHE_TEST_REDIS is not set under CI=true: the test command must start Redis (run `make test`)")
		}
		t.Skip("ROUTECACHE_TEST_REDIS not set: run `make test` to start the servers")
	}
	return v
}

// instance builds one "process" of the example on the test Redis, under
// a prefix unique to the test run (the environment sets it, as an
// operator would).
func instance(t *testing.T, prefix string, db *store) http.Handler {
	t.Helper()
	env := []string{"ROUTECACHE_DEFAULT_PREFIX=" + prefix, "ROUTECACHE_ARTICLES_TTL=1m"}
	rc, err := newCache("settings.ini", "redis://"+testRedis(t)+"/0", env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	if ttl := rc.Stats(); len(ttl) != 2 {
		t.Fatalf("regions %v", rc.Regions())
	}
	r, _ := rc.Region("articles")
	if cfg := r.Config(); cfg.TTL != time.Minute || cfg.Stale != time.Minute || cfg.Prefix != prefix {
		t.Fatalf("settings not applied: %+v", cfg)
	}
	return newHandler(rc, db)
}

func do(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	return w
}

func xc(w *httptest.ResponseRecorder) string { return w.Header().Get("X-Cache") }

// Two instances on one Redis share entries and invalidations.
func TestRedisExample(t *testing.T) {
	prefix := fmt.Sprintf("ex%d", rand.Uint64()%1e12)
	db := newStore() // the shared database
	a, b := instance(t, prefix, db), instance(t, prefix, db)

	if w := do(t, a, "GET", "/articles/1", ""); xc(w) != "MISS" || !strings.Contains(w.Body.String(), "First") {
		t.Fatalf("A: %s %q", xc(w), w.Body.String())
	}
	if w := do(t, b, "GET", "/articles/1", ""); xc(w) != "HIT" || !strings.Contains(w.Body.String(), "First") {
		t.Fatalf("B should hit A's entry: %s %q", xc(w), w.Body.String())
	}
	if w := do(t, a, "GET", "/articles", ""); xc(w) != "MISS" {
		t.Fatalf("list: %s", xc(w))
	}
	if w := do(t, b, "PUT", "/articles/1", "Changed"); w.Code != http.StatusNoContent {
		t.Fatalf("PUT: %d", w.Code)
	}
	if w := do(t, a, "GET", "/articles/1", ""); xc(w) != "MISS" || !strings.Contains(w.Body.String(), "Changed") {
		t.Fatalf("A after B's PUT: %s %q", xc(w), w.Body.String())
	}
	if w := do(t, a, "GET", "/articles", ""); xc(w) != "MISS" || !strings.Contains(w.Body.String(), "Changed") {
		t.Fatalf("list after PUT: %s %q", xc(w), w.Body.String())
	}
	if w := do(t, b, "GET", "/articles/2", ""); xc(w) != "MISS" {
		t.Fatalf("article 2: %s", xc(w))
	}
	if w := do(t, a, "GET", "/articles/2", ""); xc(w) != "HIT" {
		t.Fatalf("article 2 on A: %s", xc(w))
	}
}

// A bad settings file is an error naming it.
func TestRedisExampleBadSettings(t *testing.T) {
	path := t.TempDir() + "/bad.ini"
	if err := os.WriteFile(path, []byte("cache.regions = articles\ncache.articles.ttl = soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newCache(path, "", nil)
	if err == nil || !strings.Contains(err.Error(), "cache.articles.ttl") {
		t.Fatalf("error %v", err)
	}
	if _, err := newCache(t.TempDir()+"/missing.ini", "", nil); err == nil {
		t.Fatal("missing file: no error")
	}
}

// The command's serve loop: listen, announce, answer, shut down.
func TestRedisExampleServe(t *testing.T) {
	env := []string{fmt.Sprintf("ROUTECACHE_DEFAULT_PREFIX=ex%d", rand.Uint64()%1e12)}
	rc, err := newCache("settings.ini", "redis://"+testRedis(t)+"/0", env)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", newHandler(rc, newStore()), pw); pw.Close() }()
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
		res, err := http.Get(base + "/articles/3")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Header.Get("X-Cache") != want {
			t.Fatalf("X-Cache %q, want %s", res.Header.Get("X-Cache"), want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
