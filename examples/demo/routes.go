package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/settings"
	"github.com/routecache/routecache/echoadapter"
	"github.com/routecache/routecache/ginadapter"
	"github.com/routecache/routecache/prom"
)

// config is what the command-line flags set.
type config struct {
	Addr      string        // listen address
	Framework string        // "gin", "echo" or "nethttp"
	Backend   string        // RegionConfig.Backend; "" = embedded memory
	Delay     time.Duration // simulated latency of every origin GET
	Settings  string        // ini-style settings file for the regions ("" = built-in)
	Near      bool          // near cache in front of the articles region
	PurgeTok  string        // bearer token of /_cache/purge ("" = not mounted)
	Data      string        // redis:// URL of shared article data ("" = in process)
	Gzip      bool          // regions store responses gzipped (gzip.go)
	Logger    *slog.Logger  // nil = slog.Default()
}

// listMaxTags is the articles region's MaxTags: the list page carries a
// runtime tag per article it shows (numArticles), more than the default
// (core.DefaultMaxTags, 64), past which its entry would not be stored
// ("too-many-tags") and every request for it would call the origin.
const listMaxTags = 200

// regions returns the demo's regions: built in, or from -settings (which
// must define "articles" and "short"), with -near applied. A settings file
// that leaves the articles region's max_tags unset gets listMaxTags too:
// the file replaces the built-in regions, and the list page needs it.
func regions(cfg config) (map[string]core.RegionConfig, error) {
	rs := map[string]core.RegionConfig{
		"articles": {Backend: cfg.Backend, TTL: 5 * time.Minute, MaxTags: listMaxTags},
		"short":    {Backend: cfg.Backend, TTL: 30 * time.Second},
	}
	if cfg.Settings != "" {
		s, err := settings.LoadFile(cfg.Settings)
		if err != nil {
			return nil, err
		}
		c, err := settings.Parse(settings.Merge(s, settings.FromEnv(os.Environ())))
		if err != nil {
			return nil, err
		}
		for _, name := range []string{"articles", "short"} {
			if _, ok := c.Regions[name]; !ok {
				return nil, fmt.Errorf("-settings %s: the demo needs a region %q (cache.regions = articles, short)", cfg.Settings, name)
			}
		}
		rs = c.Regions
		if a := rs["articles"]; a.MaxTags == 0 {
			a.MaxTags = listMaxTags
			rs["articles"] = a
		}
	}
	if cfg.Near {
		a := rs["articles"]
		u, err := url.Parse(a.Backend)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "memcache" && u.Scheme != "redis+cluster") {
			return nil, fmt.Errorf("-near needs the articles region on Redis or Memcached (e.g. -backend redis://127.0.0.1:6379/0), not %q", a.Backend)
		}
		q := u.Query()
		q.Set("near_max_bytes", "16MiB")
		u.RawQuery = q.Encode()
		a.Backend = u.String()
		rs["articles"] = a
	}
	return withGzip(rs, cfg.Gzip), nil
}

// The decorators every framework uses, so the setups stay identical: an
// article is tagged with its own tag and the list's; the list pages with
// the list's, plus, at run time (core.AddTags), the tag of every article
// they show; a PUT invalidates the tag of the article it changed, which
// drops the article and exactly the list pages that showed it.
var (
	articleTags = core.Tags("article:{id}", "articles")
	listTags    = core.Tags("articles")
	putTags     = core.Tags("article:{id}")
	// /headlines has a lifetime of its own in the articles region.
	headlinesTTL = core.TTL(headlinesLifetime)
)

// newServer builds the Cache and the HTTP handler of the demo for
// cfg.Framework. The caller owns the Cache and must Close it.
func newServer(cfg config) (http.Handler, *core.Cache, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	rs, err := regions(cfg)
	if err != nil {
		return nil, nil, err
	}
	rc, err := core.New(core.Config{Regions: rs, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	data, err := openStore(cfg.Data)
	if err != nil {
		_ = rc.Close()
		return nil, nil, err
	}
	a := newApp(rc, cfg.Delay, data)
	// /metrics: the Prometheus collector, on a registry of the demo's own
	// (nothing is registered globally).
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.NewCollector(rc))
	a.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	var purge http.Handler // mounted at /_cache/purge for every method (POST and PURGE purge; others get its 405)
	if cfg.PurgeTok != "" {
		if purge, err = rc.PurgeHandler(core.PurgeConfig{Token: cfg.PurgeTok}); err != nil {
			_ = rc.Close()
			return nil, nil, err
		}
	}
	var h http.Handler
	switch cfg.Framework {
	case "gin", "":
		h = ginRoutes(rc, a, purge)
	case "echo":
		h = echoRoutes(rc, a, purge)
	case "echo5":
		h = echo5Routes(rc, a, purge, log) // echo5.go
	case "nethttp":
		h, err = netHTTPRoutes(rc, a, purge)
	default:
		err = fmt.Errorf("unknown -framework %q (want gin, echo, echo5 or nethttp)", cfg.Framework)
	}
	if err != nil {
		_ = rc.Close()
		return nil, nil, err
	}
	return h, rc, nil
}

// ginRoutes: the cache decorator is a gin.HandlerFunc placed before the
// handler; Gin has no implicit HEAD, so HEAD is registered explicitly.
func ginRoutes(rc *core.Cache, a *app, purge http.Handler) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())

	cacheArticle := ginadapter.Cache(rc, "articles", articleTags)
	cacheList := ginadapter.Cache(rc, "articles", listTags)
	cacheMe := ginadapter.Cache(rc, "short")
	cacheHeadlines := ginadapter.Cache(rc, "articles", listTags, headlinesTTL)

	show := func(c *gin.Context) { a.getArticle(c.Writer, c.Request, c.Param("id")) }
	list := func(c *gin.Context) { a.listArticles(c.Writer, c.Request) }
	me := func(c *gin.Context) { a.me(c.Writer, c.Request) }

	r.GET("/articles/:id", cacheArticle, show)
	r.HEAD("/articles/:id", cacheArticle, show)
	r.GET("/articles", cacheList, list)
	r.HEAD("/articles", cacheList, list)
	r.PUT("/articles/:id", ginadapter.Invalidate(rc, putTags),
		func(c *gin.Context) { a.putArticle(c.Writer, c.Request, c.Param("id")) })
	r.GET("/me", cacheMe, me)
	r.GET("/headlines", cacheHeadlines, func(c *gin.Context) { a.headlines(c.Writer, c.Request) })
	r.GET("/stats", func(c *gin.Context) { a.stats(c.Writer, c.Request) })
	r.GET("/metrics", gin.WrapH(a.metrics))
	if purge != nil {
		// Every method reaches the purge handler, which answers 405 with
		// Allow for the wrong ones, on every framework alike.
		r.Any("/_cache/purge", gin.WrapH(purge))
		r.Handle("PURGE", "/_cache/purge", gin.WrapH(purge))
	}
	return r
}

// echoRoutes: the cache decorator is route middleware; Echo has no
// implicit HEAD either.
func echoRoutes(rc *core.Cache, a *app, purge http.Handler) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true

	cacheArticle := echoadapter.Cache(rc, "articles", articleTags)
	cacheList := echoadapter.Cache(rc, "articles", listTags)
	cacheMe := echoadapter.Cache(rc, "short")
	cacheHeadlines := echoadapter.Cache(rc, "articles", listTags, headlinesTTL)

	show := func(c echo.Context) error {
		a.getArticle(c.Response(), c.Request(), c.Param("id"))
		return nil
	}
	list := func(c echo.Context) error {
		a.listArticles(c.Response(), c.Request())
		return nil
	}

	e.GET("/articles/:id", show, cacheArticle)
	e.HEAD("/articles/:id", show, cacheArticle)
	e.GET("/articles", list, cacheList)
	e.HEAD("/articles", list, cacheList)
	e.PUT("/articles/:id", func(c echo.Context) error {
		a.putArticle(c.Response(), c.Request(), c.Param("id"))
		return nil
	}, echoadapter.Invalidate(rc, putTags))
	e.GET("/me", func(c echo.Context) error {
		a.me(c.Response(), c.Request())
		return nil
	}, cacheMe)
	e.GET("/headlines", func(c echo.Context) error {
		a.headlines(c.Response(), c.Request())
		return nil
	}, cacheHeadlines)
	e.GET("/stats", func(c echo.Context) error {
		a.stats(c.Response(), c.Request())
		return nil
	})
	e.GET("/metrics", echo.WrapHandler(a.metrics))
	if purge != nil {
		e.Any("/_cache/purge", echo.WrapHandler(purge)) // 405 from the handler, as on Gin
		e.Add("PURGE", "/_cache/purge", echo.WrapHandler(purge))
	}
	return e
}

// netHTTPRoutes: Go 1.22 ServeMux patterns; "GET" patterns also match HEAD.
// Wrap each registered handler (not the mux): the middleware reads
// Request.Pattern and Request.PathValue, which the mux sets.
func netHTTPRoutes(rc *core.Cache, a *app, purge http.Handler) (http.Handler, error) {
	cacheArticle, err := rc.Middleware("articles", articleTags)
	if err != nil {
		return nil, err
	}
	cacheList, err := rc.Middleware("articles", listTags)
	if err != nil {
		return nil, err
	}
	cacheMe, err := rc.Middleware("short")
	if err != nil {
		return nil, err
	}
	cacheHeadlines, err := rc.Middleware("articles", listTags, headlinesTTL)
	if err != nil {
		return nil, err
	}
	invalidate, err := rc.InvalidateMiddleware(putTags)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /articles/{id}", cacheArticle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.getArticle(w, r, r.PathValue("id"))
	})))
	mux.Handle("GET /articles", cacheList(http.HandlerFunc(a.listArticles)))
	mux.Handle("PUT /articles/{id}", invalidate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.putArticle(w, r, r.PathValue("id"))
	})))
	mux.Handle("GET /me", cacheMe(http.HandlerFunc(a.me)))
	mux.Handle("GET /headlines", cacheHeadlines(http.HandlerFunc(a.headlines)))
	mux.HandleFunc("GET /stats", a.stats)
	mux.Handle("GET /metrics", a.metrics)
	if purge != nil {
		mux.Handle("/_cache/purge", purge) // every method: the handler answers 405 itself
	}
	return mux, nil
}
