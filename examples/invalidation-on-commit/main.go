// Command invalidation-on-commit shows where cache invalidation belongs
// when data lives in a transactional database: in the repository, as an
// after-commit hook of the transaction that changed the data.
//
// The rule: invalidate AFTER the transaction commits, never before (and
// never inside it). Invalidating first leaves a window in which a reader
// misses, reads the old, still-committed row and caches it again, where
// it then stays until its TTL: the invalidation is lost. Invalidating
// after the commit cannot lose anything: a reader that cached the old row
// before the commit has its entry invalidated right after. And a
// transaction that rolls back invalidates nothing.
//
// Putting the call in the repository (not in an HTTP decorator) means
// every writer — a handler, a batch job, an event consumer — invalidates
// the same tags, which are the ones the cached routes declare.
//
//	go run ./examples/invalidation-on-commit
//	curl -i localhost:8080/articles/1                                   # MISS, then HIT
//	curl -i -X PUT localhost:8080/articles/1 -d '{"title":"Renamed"}'   # commits, then invalidates
//	curl -i localhost:8080/articles/1                                   # MISS: the new title
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
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rc, err := newCache()
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	repo := &Repository{DB: seed(), Cache: rc}
	if err := serve(ctx, *addr, newRouter(rc, repo), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func newCache() (*core.Cache, error) {
	return core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": {TTL: 10 * time.Minute}}})
}

func seed() *DB {
	return NewDB(Article{ID: 1, Title: "First", Rev: 1}, Article{ID: 2, Title: "Second", Rev: 1})
}

// ArticleTag is the tag of one article's cached pages: the cached routes
// declare it as the template "article:{id}".
func ArticleTag(id int) string { return "article:" + strconv.Itoa(id) }

// Errors of the repository.
var (
	ErrNotFound = errors.New("no such article")
	ErrInvalid  = errors.New("title must not be empty")
)

// Repository is the only code that writes articles, so it is where the
// cache is told about changes.
type Repository struct {
	DB    *DB
	Cache *core.Cache
}

// Rename changes an article's title in a transaction and, once it has
// committed, invalidates the article's pages and every list.
func (r *Repository) Rename(ctx context.Context, id int, title string) error {
	tx := r.DB.Begin()
	defer tx.Rollback() // a no-op once committed
	a, ok := tx.Get(id)
	if !ok {
		return ErrNotFound
	}
	if title == "" {
		return ErrInvalid // rolled back: nothing changed, nothing invalidated
	}
	a.Title, a.Rev = title, a.Rev+1
	tx.Put(a)
	tx.AfterCommit(func() {
		// After the commit, so no reader can re-cache the old row. The
		// context is detached: the data has changed even if the client
		// went away. A failure is logged (and counted in Stats.Errors);
		// the entries then live until their TTL.
		if err := r.Cache.InvalidateTags(context.WithoutCancel(ctx), ArticleTag(id), "articles"); err != nil {
			slog.Error("invalidating after commit", "article", id, "err", err)
		}
	})
	return tx.Commit()
}

// newRouter registers the routes: reads are cached under the tags the
// repository invalidates; the write route has no cache decorator.
func newRouter(rc *core.Cache, repo *Repository) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/articles/:id", ginadapter.Cache(rc, "articles", core.Tags("article:{id}")), func(c *gin.Context) {
		id, _ := strconv.Atoi(c.Param("id"))
		a, ok := repo.DB.Get(id)
		if !ok {
			c.JSON(http.StatusNotFound, gin.H{"error": ErrNotFound.Error()})
			return
		}
		c.JSON(http.StatusOK, a)
	})
	r.GET("/articles", ginadapter.Cache(rc, "articles", core.Tags("articles")), func(c *gin.Context) {
		c.JSON(http.StatusOK, repo.DB.All())
	})
	r.PUT("/articles/:id", func(c *gin.Context) {
		id, _ := strconv.Atoi(c.Param("id"))
		var in struct {
			Title string `json:"title"`
		}
		if err := json.NewDecoder(io.LimitReader(c.Request.Body, 1<<10)).Decode(&in); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "want {\"title\": \"...\"}"})
			return
		}
		switch err := repo.Rename(c.Request.Context(), id, in.Title); {
		case errors.Is(err, ErrNotFound):
			c.JSON(http.StatusNotFound, gin.H{"error": err.Error()})
		case errors.Is(err, ErrInvalid):
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		case err != nil:
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
		default:
			c.Status(http.StatusNoContent)
		}
	})
	return r
}

// serve runs h on addr until ctx ends (internal/exampleserver).
func serve(ctx context.Context, addr string, h http.Handler, stdout io.Writer) error {
	return exampleserver.Serve(ctx, addr, h, stdout)
}
