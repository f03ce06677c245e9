// Command demo is routecache's demo: an articles API with a deliberately
// slow origin, cached per route on Gin, Echo or plain net/http.
//
//	go run ./examples/demo                      # Gin on 127.0.0.1:8080
//	go run ./examples/demo -framework echo      # the same API on Echo v4
//	go run ./examples/demo -framework echo5     # ... on Echo v5
//	go run ./examples/demo -framework nethttp   # ... on net/http's ServeMux
//	go run ./examples/demo -addr 127.0.0.1:0 -delay 200ms
//	go run ./examples/demo -gzip                # regions store responses gzipped
//
// Routes (identical on every framework):
//
//	GET  /articles/:id  cached in region "articles" (TTL 5m), tags article:{id}, articles
//	GET  /articles      cached in region "articles", tag articles, and at run time
//	                    (core.AddTags) article:N for every article it shows
//	GET  /headlines     articles 1-3: as /articles, with a lifetime of 10s (core.TTL)
//	PUT  /articles/:id  {"title": "..."}: updates, then invalidates article:{id}:
//	                    the article and every list page that showed it
//	GET  /me            personalised (Authorization: Bearer NAME); never shared
//	GET  /stats         origin_calls and per-region cache counters
//
// Once the listener is open it prints exactly one line to stdout,
// "listening on http://ADDR" with the bound address; logs go to stderr.
// SIGINT or SIGTERM shuts it down gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	flag.StringVar(&cfg.Framework, "framework", "gin", "web framework: gin, echo (v4), echo5 or nethttp")
	flag.StringVar(&cfg.Backend, "backend", "", `cache backend URL for both regions ("" = embedded memory, e.g. "memory://?max_bytes=16MiB")`)
	flag.DurationVar(&cfg.Delay, "delay", 50*time.Millisecond, "simulated latency of the origin handlers")
	flag.StringVar(&cfg.Settings, "settings", "", "ini-style settings file defining the regions articles and short (cache.regions = articles, short; see docs/configuration.md)")
	flag.BoolVar(&cfg.Near, "near", false, "put a near cache (16 MiB) in front of the articles region; needs a Redis or Memcached -backend")
	flag.StringVar(&cfg.PurgeTok, "purge-token", "", "mount the purge endpoint at /_cache/purge, requiring this bearer token")
	flag.BoolVar(&cfg.Gzip, "gzip", false, "store responses gzipped (RegionConfig.Compress): gzip clients get the stored copy, others a decoded one")
	flag.StringVar(&cfg.Data, "data", "", "keep the articles in this Redis (redis://host:port/db) so several demo processes share them; default: in process")
	flag.Parse()

	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(cfg.Logger)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		cfg.Logger.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	h, rc, err := newServer(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := rc.Close(); err != nil {
			cfg.Logger.Error("closing the cache", "err", err)
		}
	}()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	cfg.Logger.Info("demo ready", "framework", cfg.Framework, "backends", backendsInUse(rc), "delay", cfg.Delay)

	select {
	case err := <-served:
		return err // the listener failed
	case <-ctx.Done():
	}
	cfg.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// backendsInUse names each region's backend as the Cache opened it
// (from -backend or -settings), passwords hidden: "articles=redis://...".
func backendsInUse(rc *core.Cache) string {
	var parts []string
	for _, name := range rc.Regions() {
		r, err := rc.Region(name)
		if err != nil {
			continue
		}
		parts = append(parts, name+"="+displayBackend(r.Config().Backend))
	}
	return strings.Join(parts, " ")
}

// displayBackend quotes a backend URL for the log.
func displayBackend(raw string) string {
	if raw == "" {
		return "memory:// (embedded)"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return backend.DisplayURL(u)
}
