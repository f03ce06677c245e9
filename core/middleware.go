package core

import "net/http"

// Middleware returns net/http middleware caching the wrapped handler's
// responses in the named region. Route parameters come from
// Request.PathValue and the route pattern from Request.Pattern, as set by
// http.ServeMux, so wrap the handler you register, not the mux:
//
//	mux.Handle("GET /articles/{id}", mw(show))
//
// It returns an error for an unknown region or a bad template.
func (c *Cache) Middleware(region string, opts ...RouteOption) (func(http.Handler) http.Handler, error) {
	rt, err := c.Route(region, opts...)
	if err != nil {
		return nil, err
	}
	return func(h http.Handler) http.Handler {
		next := func(w http.ResponseWriter, r2 *http.Request) error {
			h.ServeHTTP(w, r2)
			return nil
		}
		// Route.serve, or serveKeyed (see serve), whichever the route
		// takes, not handle: the error, which handle only filters
		// (errSkipStore), is dropped anyway.
		if rt.keyedHits {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				_ = rt.serveKeyed(w, req, pathValues{R: req}, nil, req.Pattern, next)
			})
		}
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_ = rt.serve(w, req, pathValues{R: req}, nil, req.Pattern, next)
		})
	}, nil
}

// InvalidateMiddleware returns net/http middleware that invalidates the
// given Tags, Regions or Keys after the wrapped handler answers 2xx.
func (c *Cache) InvalidateMiddleware(opts ...InvalidateOption) (func(http.Handler) http.Handler, error) {
	iv, err := c.Invalidator(opts...)
	if err != nil {
		return nil, err
	}
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_ = iv.handle(w, req, pathValues{R: req}, func(w http.ResponseWriter, r2 *http.Request) error {
				h.ServeHTTP(w, r2)
				return nil
			})
		})
	}, nil
}
