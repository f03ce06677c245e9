// Command shared-regions serves one API from a Gin server and an Echo
// server in the same process, both cached in the regions of one
// core.Cache. Routes that use the same Key template in the same region
// share entries: a page filled through Gin is a HIT through Echo, and an
// invalidation made through either reaches both.
//
//	go run ./examples/shared-regions -addr 127.0.0.1:8080 -echo-addr 127.0.0.1:8081
//	curl -i localhost:8080/articles/1              # Gin:  X-Cache: MISS
//	curl -i localhost:8081/articles/1              # Echo: X-Cache: HIT, same body
//	curl -i -X PUT localhost:8081/articles/1 -d 'new title'   # Echo invalidates article:1
//	curl -i localhost:8080/articles/1              # Gin:  MISS, new title
//
// Once listening it prints "listening on http://GIN_ADDR" and then
// "echo listening on http://ECHO_ADDR" on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/labstack/echo/v4"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echoadapter"
	"github.com/routecache/routecache/ginadapter"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "Gin server's listen address")
	echoAddr := flag.String("echo-addr", "127.0.0.1:8081", "Echo server's listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *echoAddr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// articles is the data both servers show.
type articles struct {
	mu      sync.Mutex
	titles  map[string]string
	renders atomic.Int64 // origin work, for the test
}

func (a *articles) get(id string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.titles[id]
	return t, ok
}

func (a *articles) set(id, title string) {
	a.mu.Lock()
	a.titles[id] = title
	a.mu.Unlock()
}

// page renders an article; both frameworks send the same bytes.
func (a *articles) page(id string) (int, string) {
	a.renders.Add(1)
	t, ok := a.get(id)
	if !ok {
		return http.StatusNotFound, "no such article\n"
	}
	return http.StatusOK, fmt.Sprintf("<h1>%s</h1>\n", t)
}

// app is the shared Cache and the two servers' handlers.
type app struct {
	rc        *core.Cache
	data      *articles
	gin, echo http.Handler
}

// The route options both servers use: the same region, the same Key
// template and the same tags, so their entries are one.
var (
	cacheOpts      = []core.RouteOption{core.Key("article:{id}"), core.Tags("article:{id}", "articles")}
	invalidateOpts = []core.InvalidateOption{core.Tags("article:{id}", "articles")}
)

func newApp() (*app, error) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {TTL: 10 * time.Minute},
	}})
	if err != nil {
		return nil, err
	}
	a := &app{rc: rc, data: &articles{titles: map[string]string{"1": "First", "2": "Second"}}}

	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	g.GET("/articles/:id", ginadapter.Cache(rc, "articles", cacheOpts...), func(c *gin.Context) {
		status, body := a.data.page(c.Param("id"))
		c.Data(status, "text/html; charset=utf-8", []byte(body))
	})
	g.PUT("/articles/:id", ginadapter.Invalidate(rc, invalidateOpts...), func(c *gin.Context) {
		b, _ := io.ReadAll(c.Request.Body)
		a.data.set(c.Param("id"), strings.TrimSpace(string(b)))
		c.Status(http.StatusNoContent)
	})
	a.gin = g

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/articles/:id", func(c echo.Context) error {
		status, body := a.data.page(c.Param("id"))
		return c.Blob(status, "text/html; charset=utf-8", []byte(body))
	}, echoadapter.Cache(rc, "articles", cacheOpts...))
	e.PUT("/articles/:id", func(c echo.Context) error {
		b, _ := io.ReadAll(c.Request().Body)
		a.data.set(c.Param("id"), strings.TrimSpace(string(b)))
		return c.NoContent(http.StatusNoContent)
	}, echoadapter.Invalidate(rc, invalidateOpts...))
	a.echo = e
	return a, nil
}

// run serves both until ctx is done.
func run(ctx context.Context, ginAddr, echoAddr string, stdout io.Writer) error {
	a, err := newApp()
	if err != nil {
		return err
	}
	defer a.rc.Close()
	gl, err := net.Listen("tcp", ginAddr)
	if err != nil {
		return err
	}
	el, err := net.Listen("tcp", echoAddr)
	if err != nil {
		gl.Close()
		return err
	}
	servers := []*http.Server{
		{Handler: a.gin, ReadHeaderTimeout: 10 * time.Second},
		{Handler: a.echo, ReadHeaderTimeout: 10 * time.Second},
	}
	done := make(chan error, 2)
	go func() { done <- servers[0].Serve(gl) }()
	go func() { done <- servers[1].Serve(el) }()
	fmt.Fprintf(stdout, "listening on http://%s\n", gl.Addr())
	fmt.Fprintf(stdout, "echo listening on http://%s\n", el.Addr())
	var first error
	select {
	case first = <-done:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil && first == nil {
			first = err
		}
	}
	if first != nil && !errors.Is(first, http.ErrServerClosed) {
		return first
	}
	return nil
}
