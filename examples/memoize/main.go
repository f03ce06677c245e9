// Command memoize caches a repository method — not an HTTP route — in a
// routecache region with core.Memoize: dogpile.cache's
// cache_on_arguments for Go. Concurrent callers of one article run the
// slow query once; an update invalidates the article's tag, which would
// also reach any cached route declaring Tags("article:{id}").
//
//	go run ./examples/memoize -delay 200ms
//	curl localhost:8080/articles/1                               # slow once, then instant
//	curl -X PUT localhost:8080/articles/1 -d 'Renamed'           # invalidates tag article:1
//	curl localhost:8080/stats                                    # origin reads and cache counters
//
// Once listening it prints "listening on http://ADDR" on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"github.com/routecache/routecache/internal/exampleserver"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/routecache/routecache/core"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	delay := flag.Duration("delay", 100*time.Millisecond, "simulated query latency")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rc, err := newCache()
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	repo, err := NewRepository(NewStore(*delay), rc)
	if err != nil {
		log.Fatal(err)
	}
	if err := serve(ctx, *addr, newHandler(repo), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func newCache() (*core.Cache, error) {
	return core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {TTL: 10 * time.Minute, Stale: time.Minute},
	}})
}

// Article is a row.
type Article struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// ErrNotFound reports a missing article.
var ErrNotFound = errors.New("no such article")

// Store is the slow database.
type Store struct {
	delay time.Duration
	reads atomic.Int64 // queries run, for the test and /stats
	mu    sync.Mutex
	rows  map[int]Article
}

// NewStore returns a Store answering after delay.
func NewStore(delay time.Duration) *Store {
	s := &Store{delay: delay, rows: map[int]Article{}}
	for i := 1; i <= 5; i++ {
		s.rows[i] = Article{ID: i, Title: "Article " + strconv.Itoa(i)}
	}
	return s
}

// Article runs the (slow) query.
func (s *Store) Article(ctx context.Context, id int) (Article, error) {
	s.reads.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return Article{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.rows[id]
	if !ok {
		return Article{}, ErrNotFound
	}
	return a, nil
}

func (s *Store) rename(id int, title string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.rows[id]
	if !ok {
		return ErrNotFound
	}
	a.Title = title
	s.rows[id] = a
	return nil
}

// ArticleTag is one article's tag, shared by its memoized value and by
// any cached route declaring Tags("article:{id}").
func ArticleTag(id int) string { return "article:" + strconv.Itoa(id) }

// Repository reads through the cache and invalidates on write.
type Repository struct {
	store   *Store
	rc      *core.Cache
	article func(context.Context, int) (Article, error)
}

// NewRepository memoizes Store.Article in the region "articles": the key
// is the article's tag, and its tags are that tag and "articles".
// Memoize checks the region and the options here, once.
func NewRepository(store *Store, rc *core.Cache) (*Repository, error) {
	article, err := core.Memoize(rc, "articles", ArticleTag, store.Article,
		core.WithKeyTags(func(key string) []string { return []string{key, "articles"} }))
	if err != nil {
		return nil, err
	}
	return &Repository{store: store, rc: rc, article: article}, nil
}

// Article returns an article, from the cache when it can.
func (r *Repository) Article(ctx context.Context, id int) (Article, error) {
	return r.article(ctx, id)
}

// Rename changes an article, then invalidates its tag.
func (r *Repository) Rename(ctx context.Context, id int, title string) error {
	if err := r.store.rename(id, title); err != nil {
		return err
	}
	return r.rc.InvalidateTags(context.WithoutCancel(ctx), ArticleTag(id))
}

func newHandler(repo *Repository) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /articles/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		a, err := repo.Article(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			writeJSON(w, a)
		}
	})
	mux.HandleFunc("PUT /articles/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
		switch err := repo.Rename(r.Context(), id, strings.TrimSpace(string(b))); {
		case errors.Is(err, ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"origin_reads": repo.store.reads.Load(), "regions": repo.rc.Stats()})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// serve runs h on addr until ctx ends (internal/exampleserver).
func serve(ctx context.Context, addr string, h http.Handler, stdout io.Writer) error {
	return exampleserver.Serve(ctx, addr, h, stdout)
}
