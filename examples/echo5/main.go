// Command echo5 is the smallest Echo v5 application cached with
// routecache: one cached route, one route that invalidates it.
//
//	go run ./examples/echo5 -addr 127.0.0.1:8080
//	curl -i localhost:8080/hello/ada           # X-Cache: MISS, then HIT
//	curl -i -X POST localhost:8080/hello/ada   # invalidates tag hello:ada
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

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
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
func newRouter(rc *core.Cache, renders *atomic.Int64) http.Handler {
	e := echo.New()
	e.GET("/hello/:name", func(c *echo.Context) error {
		n := renders.Add(1)
		return c.String(http.StatusOK, fmt.Sprintf("hello %s (render #%d)\n", c.Param("name"), n))
	}, echo5adapter.Cache(rc, "pages", core.Tags("hello:{name}")))
	e.POST("/hello/:name", func(c *echo.Context) error {
		return c.NoContent(http.StatusNoContent)
	}, echo5adapter.Invalidate(rc, core.Tags("hello:{name}")))
	return e
}

// run serves until ctx is done.
func run(ctx context.Context, addr string, stdout io.Writer) error {
	rc, err := newCache()
	if err != nil {
		return err
	}
	defer rc.Close()
	var renders atomic.Int64
	return exampleserver.Serve(ctx, addr, newRouter(rc, &renders), stdout)
}
