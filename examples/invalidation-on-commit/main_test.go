package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fixture struct {
	t    *testing.T
	repo *Repository
	h    http.Handler
}

func newFixture(t *testing.T) *fixture {
	rc, err := newCache()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	repo := &Repository{DB: seed(), Cache: rc}
	return &fixture{t: t, repo: repo, h: newRouter(rc, repo)}
}

// get returns X-Cache and the article's title.
func (f *fixture) get(path string) (string, string) {
	f.t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	var a Article
	_ = json.Unmarshal(w.Body.Bytes(), &a)
	return w.Header().Get("X-Cache"), a.Title
}

func (f *fixture) put(path, body string) int {
	f.t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("PUT", path, strings.NewReader(body)))
	return w.Code
}

func TestInvalidationOnCommit(t *testing.T) {
	f := newFixture(t)
	if xc, title := f.get("/articles/1"); xc != "MISS" || title != "First" {
		t.Fatalf("%s %q", xc, title)
	}
	if xc, _ := f.get("/articles/1"); xc != "HIT" {
		t.Fatalf("second GET %s", xc)
	}
	f.get("/articles") // cache the list

	// A committed change: the next reads are fresh.
	if code := f.put("/articles/1", `{"title":"Renamed"}`); code != http.StatusNoContent {
		t.Fatalf("PUT %d", code)
	}
	if xc, title := f.get("/articles/1"); xc != "MISS" || title != "Renamed" {
		t.Fatalf("after commit: %s %q", xc, title)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("GET", "/articles", nil))
	if w.Header().Get("X-Cache") != "MISS" || !strings.Contains(w.Body.String(), "Renamed") {
		t.Fatalf("list after commit: %s %s", w.Header().Get("X-Cache"), w.Body.String())
	}

	// A rolled-back change invalidates nothing.
	if code := f.put("/articles/1", `{"title":""}`); code != http.StatusBadRequest {
		t.Fatalf("invalid PUT %d", code)
	}
	if xc, title := f.get("/articles/1"); xc != "HIT" || title != "Renamed" {
		t.Fatalf("after rollback: %s %q", xc, title)
	}
	if code := f.put("/articles/9", `{"title":"x"}`); code != http.StatusNotFound {
		t.Fatalf("PUT unknown %d", code)
	}
	if inv := f.repo.Cache.Stats()["articles"].Invalidations; inv != 2 {
		t.Fatalf("invalidations %d, want 2 (two tags, one commit)", inv)
	}
}

// renameInvalidateFirst is the mistake the recipe avoids: it invalidates
// before the transaction commits.
func renameInvalidateFirst(r *Repository, id int, title string) error {
	tx := r.DB.Begin()
	defer tx.Rollback()
	a, _ := tx.Get(id)
	a.Title = title
	tx.Put(a)
	if err := r.Cache.InvalidateTags(context.Background(), ArticleTag(id), "articles"); err != nil {
		return err
	}
	return tx.Commit()
}

// A reader between the invalidation and the commit re-caches the old row.
// Invalidating before the commit loses the invalidation; after it, never.
func TestInvalidateBeforeCommitLosesTheChange(t *testing.T) {
	t.Run("before commit (wrong)", func(t *testing.T) {
		f := newFixture(t)
		f.get("/articles/1") // cached: First
		f.repo.DB.beforeApply = func() {
			// Invalidated already, not committed yet: a reader misses and
			// caches the old row again.
			if xc, title := f.get("/articles/1"); xc != "MISS" || title != "First" {
				t.Errorf("reader inside the window: %s %q", xc, title)
			}
		}
		if err := renameInvalidateFirst(f.repo, 1, "Renamed"); err != nil {
			t.Fatal(err)
		}
		if xc, title := f.get("/articles/1"); xc != "HIT" || title != "First" {
			t.Fatalf("expected the lost invalidation to show (HIT First), got %s %q", xc, title)
		}
	})
	t.Run("after commit (the recipe)", func(t *testing.T) {
		f := newFixture(t)
		f.get("/articles/1")
		f.repo.DB.beforeApply = func() {
			// Not committed yet: the old row is still the truth.
			if xc, title := f.get("/articles/1"); xc != "HIT" || title != "First" {
				t.Errorf("reader before the commit: %s %q", xc, title)
			}
		}
		if err := f.repo.Rename(context.Background(), 1, "Renamed"); err != nil {
			t.Fatal(err)
		}
		if xc, title := f.get("/articles/1"); xc != "MISS" || title != "Renamed" {
			t.Fatalf("after commit: %s %q", xc, title)
		}
	})
}

func TestInvalidationOnCommitServe(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", f.h, pw); pw.Close() }()
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
		res, err := http.Get(base + "/articles/2")
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
