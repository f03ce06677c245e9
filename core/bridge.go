package core

import (
	"net/http"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/internal/bridge"
)

// The adapter face of the engine lives in package core/adapter, which
// reaches it through core/internal/bridge: core exports none of it. These
// are core's own names for the shared types.
type (
	// params gives the values of a request's route parameters.
	params = bridge.Params
	// nextFunc runs the rest of the handler chain.
	nextFunc = bridge.Next
	// pathValues adapts a net/http request (Go 1.22 patterns) to params.
	pathValues = bridge.PathValues
)

var (
	// errSkipStore, returned by a nextFunc, keeps a response out of the
	// cache without reporting an error.
	errSkipStore = bridge.ErrSkipStore
	// noParams is the params of a route without parameters.
	noParams = bridge.NoParams
)

func init() {
	bridge.ServeRoute = func(rt any, w http.ResponseWriter, req *http.Request, p params, pattern string, next nextFunc) error {
		return rt.(*Route).handle(w, req, p, pattern, next)
	}
	bridge.ServeRouteCtx = func(rt any, w http.ResponseWriter, req *http.Request, pattern string, ctx, next any, f *bridge.Funcs) (bool, error) {
		return rt.(*Route).handleCtx(w, req, pattern, ctx, next, f)
	}
	bridge.ServeInvalidator = func(iv any, w http.ResponseWriter, req *http.Request, p params, next nextFunc) error {
		return iv.(*Invalidator).handle(w, req, p, next)
	}
	bridge.IsRecorder = func(w http.ResponseWriter) bool {
		_, ok := w.(*recorder)
		return ok
	}
	bridge.RegionName = regionName
	bridge.NormalizeRegion = func(rc any) error { return normalize(rc.(*RegionConfig)) }
	bridge.ParseBytes = parseBytes
	bridge.KnownScheme = backend.Registered
	bridge.SchemeList = schemeList
}
