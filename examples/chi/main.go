// Command chi caches routes of a go-chi/chi router with routecache's
// net/http middleware (core.Cache.Middleware): one cached route, one that
// invalidates it, and a sub-router whose key template reads a chi
// parameter.
//
//	go run ./examples/chi -addr 127.0.0.1:8080
//	curl -i localhost:8080/hello/ada           # X-Cache: MISS, then HIT
//	curl -i -X POST localhost:8080/hello/ada   # invalidates tag hello:{name}
//	curl -i 'localhost:8080/articles/7?ref=a'  # key article:7, whatever the query
//
// The cache reads route parameters with Request.PathValue and the route
// pattern from Request.Pattern. chi (v5.5.0 here) sets both from its own
// URL parameters just before it calls the matched route's handler, inline
// middleware (r.With) included, so a template's {name} is what
// chi.URLParam(r, "name") returns. Put the cache middleware on the route
// (r.With(mw).Get, or mw(handler)), never in r.Use on a router: that runs
// before chi has matched a route, when neither is set yet.
//
// Once listening it prints "listening on http://ADDR" on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/internal/exampleserver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// newCache builds the Cache: one region in process memory.
func newCache() (*core.Cache, error) {
	return core.New(core.Config{Regions: map[string]core.RegionConfig{
		"pages": {TTL: time.Minute},
	}})
}

// newRouter registers the routes. renders counts the origin's work.
func newRouter(rc *core.Cache, renders *atomic.Int64) (http.Handler, error) {
	cacheHello, err := rc.Middleware("pages", core.Tags("hello:{name}"))
	if err != nil {
		return nil, err
	}
	invalidateHello, err := rc.InvalidateMiddleware(core.Tags("hello:{name}"))
	if err != nil {
		return nil, err
	}
	// One entry per article id: the key template leaves the query out.
	cacheArticle, err := rc.Middleware("pages", core.Key("article:{id}"), core.Tags("article:{id}"))
	if err != nil {
		return nil, err
	}

	r := chi.NewRouter()
	r.With(cacheHello).Get("/hello/{name}", func(w http.ResponseWriter, req *http.Request) {
		n := renders.Add(1)
		fmt.Fprintf(w, "hello %s (render #%d)\n", chi.URLParam(req, "name"), n)
	})
	r.With(invalidateHello).Post("/hello/{name}", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	r.Route("/articles", func(r chi.Router) {
		r.With(cacheArticle).Get("/{id}", func(w http.ResponseWriter, req *http.Request) {
			n := renders.Add(1)
			fmt.Fprintf(w, "article %s (render #%d)\n", chi.URLParam(req, "id"), n)
		})
	})
	return r, nil
}

// run serves until ctx is done.
func run(ctx context.Context, addr string, stdout io.Writer) error {
	rc, err := newCache()
	if err != nil {
		return err
	}
	defer rc.Close()
	var renders atomic.Int64
	h, err := newRouter(rc, &renders)
	if err != nil {
		return err
	}
	return exampleserver.Serve(ctx, addr, h, stdout)
}
