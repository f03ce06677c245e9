// Command redis serves an articles API on net/http, cached in Redis, with
// its regions configured from a settings file (settings.ini beside this
// file) the way a Pyramid application configures dogpile.cache regions.
// Several instances pointed at one Redis share their entries and their
// invalidations.
//
//	go run ./examples/redis -redis redis://127.0.0.1:6379/0
//	go run ./examples/redis -addr 127.0.0.1:8081 -redis redis://127.0.0.1:6379/0   # a second instance
//	curl -i localhost:8080/articles/1     # MISS; then a HIT on either instance
//	curl -i -X PUT localhost:8081/articles/1 -d 'new title'
//
// Flags: -settings (default examples/redis/settings.ini, run from the
// repository root), -redis (default $REDIS_URL; empty keeps the file's
// backend). ROUTECACHE_<REGION>_<OPTION> environment variables override
// the file (settings.FromEnv). Once listening it prints
// "listening on http://ADDR" on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/routecache/routecache/core/settings"
	"github.com/routecache/routecache/internal/exampleserver"

	"github.com/routecache/routecache/core"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	settings := flag.String("settings", "examples/redis/settings.ini", "settings file with the cache.* keys")
	redisURL := flag.String("redis", os.Getenv("REDIS_URL"), "Redis URL for every region (replaces cache.default.backend)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rc, err := newCache(*settings, *redisURL, os.Environ())
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	if err := serve(ctx, *addr, newHandler(rc, newStore()), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// newCache reads the settings file, lets the environment and the -redis
// flag override it, and builds the Cache.
func newCache(path, redisURL string, environ []string) (*core.Cache, error) {
	file, err := settings.LoadFile(path)
	if err != nil {
		return nil, err
	}
	s := settings.Merge(file, settings.FromEnv(environ))
	if redisURL != "" {
		s["cache.default.backend"] = redisURL
	}
	return settings.New(s)
}

// store is the "database".
type store struct {
	mu     sync.Mutex
	titles map[string]string
}

func newStore() *store {
	return &store{titles: map[string]string{"1": "First", "2": "Second", "3": "Third"}}
}

// newHandler registers the routes on a ServeMux; each cached handler is
// wrapped by the Cache's net/http middleware.
func newHandler(rc *core.Cache, db *store) http.Handler {
	must := func(mw func(http.Handler) http.Handler, err error) func(http.Handler) http.Handler {
		if err != nil {
			panic(err)
		}
		return mw
	}
	article := must(rc.Middleware("articles", core.Tags("article:{id}")))
	list := must(rc.Middleware("lists", core.Tags("articles")))
	update := must(rc.InvalidateMiddleware(core.Tags("article:{id}", "articles")))

	mux := http.NewServeMux()
	mux.Handle("GET /articles/{id}", article(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db.mu.Lock()
		t, ok := db.titles[r.PathValue("id")]
		db.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, map[string]string{"id": r.PathValue("id"), "title": t})
	})))
	mux.Handle("GET /articles", list(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db.mu.Lock()
		out := make(map[string]string, len(db.titles))
		for k, v := range db.titles {
			out[k] = v
		}
		db.mu.Unlock()
		writeJSON(w, out)
	})))
	mux.Handle("PUT /articles/{id}", update(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			http.Error(w, "send the new title as the body", http.StatusBadRequest)
			return
		}
		db.mu.Lock()
		db.titles[r.PathValue("id")] = strings.TrimSpace(string(b))
		db.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, rc.Stats()) })
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
