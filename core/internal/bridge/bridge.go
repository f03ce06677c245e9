// Package bridge joins package core and package core/adapter: it holds the
// types both speak (Params, Next, ErrSkipStore) and the entry points into
// the engine, function values that core sets in its init. core/adapter
// re-exports them; core itself exports none of it, so `go doc core` shows
// what an application calls and not the plumbing adapters need.
package bridge

import (
	"errors"
	"net/http"
)

// Params gives the cache the values of a request's route parameters.
type Params interface {
	// Get returns the value of the named parameter and whether it exists.
	Get(name string) (string, bool)
}

// Next runs the rest of the handler chain, writing to w.
type Next func(w http.ResponseWriter, r *http.Request) error

// ErrSkipStore, returned by a Next, keeps a response out of the cache
// without reporting an error.
var ErrSkipStore = errors.New("routecache: response not storable")

// NoParams is the Params of a route without parameters.
var NoParams Params = noParams{}

type noParams struct{}

func (noParams) Get(string) (string, bool) { return "", false }

// PathValues adapts a net/http request (Go 1.22 patterns) to Params.
type PathValues struct{ R *http.Request }

// Get returns r.PathValue(name); a missing or empty value reports false.
func (p PathValues) Get(name string) (string, bool) {
	v := p.R.PathValue(name)
	return v, v != ""
}

// Funcs are an adapter's functions for ServeRouteCtx. Both take the
// framework's request context as ctx; Next also the framework's next
// handler as next.
type Funcs struct {
	// Params returns the value of a route parameter; nil: no parameters.
	Params func(ctx any, name string) (string, bool)
	// Next runs the rest of the handler chain.
	Next func(ctx, next any, w http.ResponseWriter, r *http.Request) error
}

// The engine's entry points, set by core's init. rt is a *core.Route, iv
// a *core.Invalidator (core/adapter's functions take those types; they
// travel as any only because this package cannot import core).
var (
	// ServeRoute runs a cached route's lifecycle for one request.
	ServeRoute func(rt any, w http.ResponseWriter, req *http.Request, p Params, pattern string, next Next) error
	// ServeRouteCtx is ServeRoute with the request's context, the
	// framework's next handler and the adapter's Funcs instead of a Params
	// and a Next; ran reports whether Next ran.
	ServeRouteCtx func(rt any, w http.ResponseWriter, req *http.Request, pattern string, ctx, next any, f *Funcs) (ran bool, err error)
	// ServeInvalidator runs an invalidating route for one request.
	ServeInvalidator func(iv any, w http.ResponseWriter, req *http.Request, p Params, next Next) error
	// IsRecorder reports whether w is the engine's recording writer (the
	// writer a Next receives on a miss and on an invalidating route).
	IsRecorder func(w http.ResponseWriter) bool
)
