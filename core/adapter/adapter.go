// Package adapter is what a framework adapter needs to put routecache in
// front of a framework's routes: ginadapter and echoadapter are written
// with it, and so can an adapter for any other framework (see
// docs/adapters.md). Applications do not need it; they call package core
// (and an adapter).
//
// An adapter builds a *core.Route (Cache.Route) or a *core.Invalidator
// (Cache.Invalidator) once per route, and per request translates its
// framework's context into the net/http types the engine works on:
//
//   - the route's parameters, as a Params;
//   - the route's pattern ("/articles/:id"), part of the default key;
//   - the rest of the chain, as a Next, which the engine runs on a miss
//     (never on a hit) with its own writer, a ResponseWriter;
//   - the framework's failure signals (an abort, a recorded error, a
//     handler that returned without answering), as ErrSkipStore.
//
// Then it calls ServeRoute or ServeInvalidator.
package adapter

import (
	"net/http"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/internal/bridge"
)

// Params gives the cache the values of a request's route parameters
// (":id" in Gin and Echo, "{id}" in net/http patterns). Its one method,
// Get(name string) (string, bool), returns the value of the named
// parameter and whether it exists. Key and tag templates read it
// ("article:{id}"), and so does the default key of a route whose pattern
// has parameters.
type Params = bridge.Params

// Next runs the rest of the handler chain, writing to w and reading r.
// Adapters build it from their framework's "next". It returns the
// handler's error (Echo), or ErrSkipStore when the framework reports the
// request as failed or aborted without an error value (Gin): either keeps
// the response out of the cache.
type Next = bridge.Next

// PathValues adapts a net/http request (Go 1.22 ServeMux patterns) to
// Params: PathValues{R: req}.Get(name) is req.PathValue(name), a missing
// or empty value reporting false.
type PathValues = bridge.PathValues

// NoParams is the Params of a route without parameters.
var NoParams Params = bridge.NoParams

// ErrSkipStore, returned by a Next, keeps a response out of the cache
// without reporting an error: ServeRoute and ServeInvalidator return nil.
// Adapters use it for requests their framework marks as failed without an
// error value (Gin's c.Errors or an abort, an Echo handler that returned
// nil uncommitted).
var ErrSkipStore = bridge.ErrSkipStore

// ServeRoute runs the cache lifecycle of rt for one request: look up,
// replay a hit (next does not run), or run next (once per key in this
// process) through a ResponseWriter and store its response when it is
// storable. pattern is the route pattern ("/articles/:id"); p gives the
// route's parameters. It returns next's error if next ran (nil for
// ErrSkipStore); on a bypass next runs with w itself.
func ServeRoute(rt *core.Route, w http.ResponseWriter, req *http.Request, p Params, pattern string, next Next) error {
	return bridge.ServeRoute(rt, w, req, p, pattern, next)
}

// Funcs are an adapter's functions for ServeRouteCtx, built once (a
// package variable). Params(ctx, name) returns the value of a route
// parameter and whether it exists (nil: routes have none); Next(ctx, next,
// w, r) runs the rest of the chain as a Next does. ctx and next are the
// values the adapter passed to ServeRouteCtx.
type Funcs = bridge.Funcs

// ServeRouteCtx is ServeRoute for an adapter whose framework has a
// request context (gin.Context, echo.Context): instead of a Params and a
// Next, which would be a closure or an interface value made per request,
// it takes that context as ctx, the framework's next handler (Echo's
// echo.HandlerFunc; nil for Gin) as next, and the adapter's Funcs, which
// reach the parameters and the rest of the chain through them. Pass
// pointers, interface values or funcs as ctx and next: converting those
// to any allocates nothing, so a hit through ServeRouteCtx allocates
// nothing, without pooling. ran reports whether f.Next ran (false on a
// hit: the framework must then not run the chain).
func ServeRouteCtx(rt *core.Route, w http.ResponseWriter, req *http.Request, pattern string, ctx, next any, f *Funcs) (ran bool, err error) {
	return bridge.ServeRouteCtx(rt, w, req, pattern, ctx, next, f)
}

// ServeInvalidator runs an invalidating route for one request: it runs
// next with a ResponseWriter and, when the response is a 2xx, applies
// iv's invalidations before the status line is sent.
//
// When an invalidation cannot be applied then (the backend refused it: it
// is queued and retried, see core.ErrInvalidationPending; or the Cache was
// closed meanwhile), the 2xx is not sent: the client gets 503 with
// Retry-After: 1 and X-Cache-Invalidation: pending, and the handler's
// body is discarded. A 2xx therefore always means the invalidation was
// applied. A tag or key template naming a missing route parameter is
// logged and the response goes out unchanged.
//
// After Close, a route whose invalidations reach a shared backend (Redis,
// Memcached, a Store) answers 503 without running next; a memory-only one
// runs it uncached. A Next returning ErrSkipStore means no invalidation
// (unless a 2xx was already committed) and an uncommitted response left
// for the framework to finish; ServeInvalidator then returns nil.
func ServeInvalidator(iv *core.Invalidator, w http.ResponseWriter, req *http.Request, p Params, next Next) error {
	return bridge.ServeInvalidator(iv, w, req, p, next)
}
