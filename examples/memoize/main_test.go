package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func newRepo(t *testing.T, delay time.Duration) *Repository {
	t.Helper()
	rc, err := newCache()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	repo, err := NewRepository(NewStore(delay), rc)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// 50 concurrent callers over 5 articles: one query per article. An update
// invalidates by tag: one more query for that article only.
func TestMemoizeExample(t *testing.T) {
	repo := newRepo(t, 20*time.Millisecond)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			a, err := repo.Article(ctx, id)
			if err == nil && a.ID != id {
				err = errors.New("wrong article")
			}
			errs <- err
		}(i%5 + 1)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := repo.store.reads.Load(); n != 5 {
		t.Fatalf("%d queries for 5 articles under 50 callers, want 5", n)
	}
	if err := repo.Rename(ctx, 2, "Renamed"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		a, err := repo.Article(ctx, 2)
		if err != nil || a.Title != "Renamed" {
			t.Fatalf("after rename: %+v %v", a, err)
		}
		if _, err := repo.Article(ctx, 3); err != nil {
			t.Fatal(err)
		}
	}
	if n := repo.store.reads.Load(); n != 6 {
		t.Fatalf("%d queries, want 6 (one more, for the renamed article)", n)
	}
	// Errors are not cached.
	for i := 0; i < 2; i++ {
		if _, err := repo.Article(ctx, 99); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing article: %v", err)
		}
	}
	if n := repo.store.reads.Load(); n != 8 {
		t.Fatalf("%d queries, want 8", n)
	}
}

// The HTTP front: reads served from the cache, PUT invalidates.
func TestMemoizeExampleHTTP(t *testing.T) {
	repo := newRepo(t, 0)
	srv := httptest.NewServer(newHandler(repo))
	defer srv.Close()
	get := func(path string) Article {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var a Article
		if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	get("/articles/1")
	get("/articles/1")
	req, _ := http.NewRequest("PUT", srv.URL+"/articles/1", strings.NewReader("New"))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %d", res.StatusCode)
	}
	if a := get("/articles/1"); a.Title != "New" {
		t.Fatalf("after PUT: %+v", a)
	}
	if n := repo.store.reads.Load(); n != 2 {
		t.Fatalf("queries %d, want 2", n)
	}
	st := repo.rc.Stats()["articles"]
	if st.Hits != 1 || st.Misses != 2 || st.Stores != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemoizeExampleServe(t *testing.T) {
	repo := newRepo(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", newHandler(repo), pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	go io.Copy(io.Discard, pr)
	for i := 0; i < 2; i++ {
		res, err := http.Get(base + "/articles/4")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	if n := repo.store.reads.Load(); n != 1 {
		t.Fatalf("queries %d, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
