// Command gin is the smallest Gin application cached with routecache: one
// cached route, one route that invalidates it.
//
//	go run ./examples/gin -addr 127.0.0.1:8080
//	curl -i localhost:8080/hello/ada           # X-Cache: MISS, then HIT
//	curl -i -X POST localhost:8080/hello/ada   # invalidates tag hello:ada
//
// Once listening it prints "listening on http://ADDR" on stdout.
package main

import (
	"context"
	"flag"
	"github.com/routecache/routecache/internal/exampleserver"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
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
func newRouter(rc *core.Cache, renders *atomic.Int64) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/hello/:name", ginadapter.Cache(rc, "pages", core.Tags("hello:{name}")), func(c *gin.Context) {
		n := renders.Add(1)
		c.String(http.StatusOK, "hello %s (render #%d)\n", c.Param("name"), n)
	})
	r.POST("/hello/:name", ginadapter.Invalidate(rc, core.Tags("hello:{name}")), func(c *gin.Context) {
		c.Status(http.StatusNoContent)
	})
	return r
}

// run serves until ctx is done.
func run(ctx context.Context, addr string, stdout io.Writer) error {
	rc, err := newCache()
	if err != nil {
		return err
	}
	defer rc.Close()
	var renders atomic.Int64
	return serve(ctx, addr, newRouter(rc, &renders), stdout)
}

// serve runs h on addr until ctx ends (internal/exampleserver).
func serve(ctx context.Context, addr string, h http.Handler, stdout io.Writer) error {
	return exampleserver.Serve(ctx, addr, h, stdout)
}
