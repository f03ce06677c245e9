// Package ginadapter puts routecache in front of Gin routes. It only
// translates between gin.Context and the net/http types the core works on:
// every caching rule lives in package core.
//
//	r.GET("/articles/:id", ginadapter.Cache(rc, "articles", core.Tags("article:{id}")), show)
//	r.PUT("/articles/:id", ginadapter.Invalidate(rc, core.Tags("article:{id}")), update)
package ginadapter

import (
	"bufio"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Cache returns a handler caching the rest of the route's chain in the
// named region. Place it before the route's handler. It panics on an
// unknown region or a bad option, at route registration (like
// regexp.MustCompile); use NewCache to get the error instead.
func Cache(rc *core.Cache, region string, opts ...core.RouteOption) gin.HandlerFunc {
	h, err := NewCache(rc, region, opts...)
	if err != nil {
		panic(err)
	}
	return h
}

// NewCache is Cache returning construction errors.
func NewCache(rc *core.Cache, region string, opts ...core.RouteOption) (gin.HandlerFunc, error) {
	rt, err := rc.Route(region, opts...)
	if err != nil {
		return nil, err
	}
	return func(c *gin.Context) {
		ran, _ := adapter.ServeRouteCtx(rt, c.Writer, c.Request, c.FullPath(), c, nil, &funcs)
		if !ran {
			c.Abort() // served from the cache: the handler must not run
		}
	}, nil
}

// funcs reach a request's parameters and the rest of its chain through
// its *gin.Context: a hit allocates nothing.
var funcs = adapter.Funcs{
	Params: func(ctx any, name string) (string, bool) { return ctx.(*gin.Context).Params.Get(name) },
	Next: func(ctx, _ any, w http.ResponseWriter, r *http.Request) error {
		return runNext(ctx.(*gin.Context), w, r, true)
	},
}

// Invalidate returns a handler for mutating routes: after the rest of the
// chain answers 2xx, and before the answer is sent, it invalidates the
// given core.Tags, core.Regions and core.Keys. When the backend does not
// take an invalidation, the client gets 503 instead of the 2xx (the
// invalidation is queued for retry; see adapter.ServeInvalidator). It panics
// on a bad option; use NewInvalidate to get the error instead.
func Invalidate(rc *core.Cache, opts ...core.InvalidateOption) gin.HandlerFunc {
	h, err := NewInvalidate(rc, opts...)
	if err != nil {
		panic(err)
	}
	return h
}

// NewInvalidate is Invalidate returning construction errors.
func NewInvalidate(rc *core.Cache, opts ...core.InvalidateOption) (gin.HandlerFunc, error) {
	iv, err := rc.Invalidator(opts...)
	if err != nil {
		return nil, err
	}
	return func(c *gin.Context) {
		_ = adapter.ServeInvalidator(iv, c.Writer, c.Request, &c.Params, func(w http.ResponseWriter, r *http.Request) error {
			return runNext(c, w, r, false)
		})
	}, nil
}

// runNext runs the rest of the chain with w as c.Writer and r as
// c.Request, restoring both afterwards (also when a handler panics).
// Gin reports failures without an error value; they keep the response
// out of the cache.
//
// For a cached route (cached), a response the chain sent no body for
// (also one committed by c.Writer.WriteHeaderNow()) is not stored either: Gin sends its headers only once the whole chain has
// returned, after the middleware outside the cache ran on, and a
// Set-Cookie or private Cache-Control set there would go out with a
// response stored without it (the next visitor would get the page made
// for the first). Its status goes to Gin's own writer, which sends it
// with those headers, as without the cache.
func runNext(c *gin.Context, w http.ResponseWriter, r *http.Request, cached bool) error {
	origW, origR := c.Writer, c.Request
	var gw *writer
	if cw, ok := adapter.AsResponseWriter(w); ok {
		gw = &writer{ResponseWriter: origW, cw: cw}
		c.Writer = gw
	}
	c.Request = r
	defer func() { c.Writer, c.Request = origW, origR }()
	c.Next()
	bodiless := false
	if gw != nil {
		status := gw.pending
		gw.sendPending() // a status set without a body (c.Status(204))
		// Committed without a body (c.Writer.WriteHeaderNow()), the
		// headers also wait for the chain to return: Gin sends them at
		// the first body write, or then.
		if cached && gw.cw.Size() == 0 {
			bodiless = true
			if status != 0 && !gw.cw.Written() {
				origW.WriteHeader(status) // sent by Gin when the chain returns
			}
		}
	}
	if c.IsAborted() || len(c.Errors) > 0 || bodiless {
		return adapter.ErrSkipStore
	}
	return nil
}

// writer is a gin.ResponseWriter whose writes go through the core's
// writer (which streams to Gin's own writer and records).
type writer struct {
	gin.ResponseWriter
	cw adapter.ResponseWriter
	// pending is the status Gin would send: with Gin the last WriteHeader
	// before the first write wins, so it is handed on only then.
	pending int
}

func (w *writer) sendPending() {
	if w.pending != 0 {
		w.cw.WriteHeader(w.pending)
		w.pending = 0
	}
}

func (w *writer) Header() http.Header { return w.cw.Header() }
func (w *writer) WriteHeader(code int) {
	if !w.cw.Written() {
		w.pending = code
	}
}
func (w *writer) WriteHeaderNow()                              { w.sendPending(); w.cw.WriteHeaderNow() }
func (w *writer) Write(b []byte) (int, error)                  { w.sendPending(); return w.cw.Write(b) }
func (w *writer) WriteString(s string) (int, error)            { w.sendPending(); return w.cw.WriteString(s) }
func (w *writer) Flush()                                       { w.sendPending(); w.cw.Flush() }
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.cw.Hijack() }
func (w *writer) Written() bool                                { return w.cw.Written() }
func (w *writer) Size() int {
	if !w.cw.Written() {
		return -1 // Gin's value for "nothing written"
	}
	return w.cw.Size()
}
func (w *writer) Status() int {
	if w.pending != 0 {
		return w.pending
	}
	if s := w.cw.Status(); s != 0 {
		return s
	}
	return w.ResponseWriter.Status()
}
func (w *writer) Unwrap() http.ResponseWriter { return w.cw }

// PurgeHandler returns the core's authenticated purge endpoint as a Gin
// handler (see core.Cache.PurgeHandler). Mount it on every method, so
// that other methods get its 405 with Allow (Gin's router would answer
// 404), as on Echo and net/http:
//
//	purge, err := ginadapter.PurgeHandler(rc, core.PurgeConfig{Token: token})
//	r.Any("/_cache/purge", purge)
//	r.Handle("PURGE", "/_cache/purge", purge)
func PurgeHandler(rc *core.Cache, cfg core.PurgeConfig) (gin.HandlerFunc, error) {
	h, err := rc.PurgeHandler(cfg)
	if err != nil {
		return nil, err
	}
	return gin.WrapH(h), nil
}
