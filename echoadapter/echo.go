// Package echoadapter puts routecache in front of Echo routes. It only
// translates between echo.Context and the net/http types the core works
// on: every caching rule lives in package core.
//
//	e.GET("/articles/:id", show, echoadapter.Cache(rc, "articles", core.Tags("article:{id}")))
//	e.PUT("/articles/:id", update, echoadapter.Invalidate(rc, core.Tags("article:{id}")))
package echoadapter

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Cache returns route middleware caching the handler's responses in the
// named region. It panics on an unknown region or a bad option, at route
// registration; use NewCache to get the error instead.
func Cache(rc *core.Cache, region string, opts ...core.RouteOption) echo.MiddlewareFunc {
	m, err := NewCache(rc, region, opts...)
	if err != nil {
		panic(err)
	}
	return m
}

// NewCache is Cache returning construction errors.
func NewCache(rc *core.Cache, region string, opts ...core.RouteOption) (echo.MiddlewareFunc, error) {
	rt, err := rc.Route(region, opts...)
	if err != nil {
		return nil, err
	}
	handler := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			_, err := adapter.ServeRouteCtx(rt, c.Response(), c.Request(), c.Path(), c, next, &funcs)
			return err
		}
	}
	// Echo v4 applies route middleware per request: the memo hands out
	// the handler made for the same next before (handlermemo.go).
	memo := new(handlerMemo)
	return func(next echo.HandlerFunc) echo.HandlerFunc { return memo.wrap(next, handler) }, nil
}

// funcs reach a request's route parameters and its next handler through
// its context: a hit allocates nothing.
var funcs = adapter.Funcs{
	Params: func(ctx any, name string) (string, bool) { return params{ctx.(echo.Context)}.Get(name) },
	Next: func(ctx, next any, w http.ResponseWriter, r *http.Request) error {
		return runNext(ctx.(echo.Context), next.(echo.HandlerFunc), w, r, true)
	},
}

// Invalidate returns route middleware for mutating routes: after the
// handler answers 2xx (and returned nil), before the answer is sent, it
// invalidates the given core.Tags, core.Regions and core.Keys. When the
// backend does not take an invalidation, the client gets 503 instead of
// the 2xx (the invalidation is queued for retry; see
// adapter.ServeInvalidator). It panics on a bad option; use NewInvalidate
// to get the error instead.
func Invalidate(rc *core.Cache, opts ...core.InvalidateOption) echo.MiddlewareFunc {
	m, err := NewInvalidate(rc, opts...)
	if err != nil {
		panic(err)
	}
	return m
}

// NewInvalidate is Invalidate returning construction errors.
func NewInvalidate(rc *core.Cache, opts ...core.InvalidateOption) (echo.MiddlewareFunc, error) {
	iv, err := rc.Invalidator(opts...)
	if err != nil {
		return nil, err
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			return adapter.ServeInvalidator(iv, c.Response(), c.Request(), params{c}, func(w http.ResponseWriter, r *http.Request) error {
				// A handler returning nil succeeded, written or not (Echo
				// answers 200): not a failure that skips invalidation.
				return runNext(c, next, w, r, false)
			})
		}
	}, nil
}

// runNext runs the handler writing to w with r as its request. When w is
// the core's writer, the handler gets a fresh echo.Response over it, so
// Echo's own bookkeeping (Committed, Status, Size) and the original
// response's hooks stay right: the core writer forwards to the original.
// With skipUncommitted, a nil return without a written response reports
// adapter.ErrSkipStore (nothing worth caching); an invalidating route counts
// it as the success Echo answers it with.
func runNext(c echo.Context, next echo.HandlerFunc, w http.ResponseWriter, r *http.Request, skipUncommitted bool) error {
	origRes, origReq := c.Response(), c.Request()
	cw, wrapped := adapter.AsResponseWriter(w)
	var res *echo.Response
	if wrapped {
		res = echo.NewResponse(cw, c.Echo())
		c.SetResponse(res)
	}
	c.SetRequest(r)
	defer func() {
		c.SetResponse(origRes)
		c.SetRequest(origReq)
	}()
	err := next(c)
	if err == nil && skipUncommitted && wrapped && !res.Committed {
		// Echo reports 200 before anything is written; a handler that
		// returned nil without writing has no response worth keeping.
		return adapter.ErrSkipStore
	}
	return err
}

// params gives the core an Echo route's parameters.
type params struct{ c echo.Context }

func (p params) Get(name string) (string, bool) {
	for i, n := range p.c.ParamNames() {
		if n == name {
			vals := p.c.ParamValues()
			if i < len(vals) {
				return vals[i], true
			}
		}
	}
	return "", false
}

// PurgeHandler returns the core's authenticated purge endpoint as an Echo
// handler (see core.Cache.PurgeHandler). Mount it on every method, so
// that other methods get its 405 with Allow and JSON error, as on Gin and
// net/http:
//
//	purge, err := echoadapter.PurgeHandler(rc, core.PurgeConfig{Token: token})
//	e.Any("/_cache/purge", purge)
//	e.Add("PURGE", "/_cache/purge", purge)
func PurgeHandler(rc *core.Cache, cfg core.PurgeConfig) (echo.HandlerFunc, error) {
	h, err := rc.PurgeHandler(cfg)
	if err != nil {
		return nil, err
	}
	return echo.WrapHandler(h), nil
}
