package main

import (
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
)

// echo5Routes is the demo on Echo v5 (-framework echo5): the routes of
// echoRoutes with v5's *echo.Context handlers. The cache decorator is
// route middleware; HEAD is registered explicitly (v5 could also answer
// it from the GET route with RouterConfig.AutoHandleHEAD). Echo v5's Any
// matches every method, PURGE included. Echo's own messages go to log
// (v5's default logger writes to stdout, which the demo keeps for its
// "listening on" line).
func echo5Routes(rc *core.Cache, a *app, purge http.Handler, log *slog.Logger) http.Handler {
	e := echo.New()
	e.Logger = log

	cacheArticle := echo5adapter.Cache(rc, "articles", articleTags)
	cacheList := echo5adapter.Cache(rc, "articles", listTags)
	cacheMe := echo5adapter.Cache(rc, "short")
	cacheHeadlines := echo5adapter.Cache(rc, "articles", listTags, headlinesTTL)

	show := func(c *echo.Context) error {
		a.getArticle(c.Response(), c.Request(), c.Param("id"))
		return nil
	}
	list := func(c *echo.Context) error {
		a.listArticles(c.Response(), c.Request())
		return nil
	}

	e.GET("/articles/:id", show, cacheArticle)
	e.HEAD("/articles/:id", show, cacheArticle)
	e.GET("/articles", list, cacheList)
	e.HEAD("/articles", list, cacheList)
	e.PUT("/articles/:id", func(c *echo.Context) error {
		a.putArticle(c.Response(), c.Request(), c.Param("id"))
		return nil
	}, echo5adapter.Invalidate(rc, putTags))
	e.GET("/me", func(c *echo.Context) error {
		a.me(c.Response(), c.Request())
		return nil
	}, cacheMe)
	e.GET("/headlines", func(c *echo.Context) error {
		a.headlines(c.Response(), c.Request())
		return nil
	}, cacheHeadlines)
	e.GET("/stats", func(c *echo.Context) error {
		a.stats(c.Response(), c.Request())
		return nil
	})
	e.GET("/metrics", echo.WrapHandler(a.metrics))
	if purge != nil {
		e.Any("/_cache/purge", echo.WrapHandler(purge)) // 405 from the handler, as on Gin
	}
	return e
}
