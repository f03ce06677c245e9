package core

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/internal/bridge"
)

// Route is a compiled cache decorator: one region, a key and tags. It is
// safe for concurrent use and meant to be built once per route.
type Route struct {
	r    *Region
	key  *template // nil: the default key
	tags []*template
	// staticTags holds the counter names of tags without placeholders.
	staticTags []string
	// tagLeads holds, for each tag with placeholders, the start of its
	// counter name: the region's tag counter prefix and the template's
	// leading literal part, whose index tagFrom gives the next of.
	tagLeads []string
	tagFrom  []int
	// namesFromKey is set when the route's counter names are a function of
	// its canonical key (the default key, no {header:...} in a tag): an
	// entry this route stored under the request's key then depends on
	// exactly the counters the request named, and a hit compares values
	// only.
	namesFromKey bool
	// keyedHits is set when the route's hits may be answered from the
	// key alone (Route.serveKeyed): its region is on the memory store or
	// a near cache and does not compress, and namesFromKey.
	keyedHits bool
	// ttl, stale and staleIfError are the route's own lifetime (TTL,
	// StaleFor): 0 and -1 mean its region's.
	ttl, stale, staleIfError time.Duration
	skip                     func(*http.Request) bool   // SkipIf
	keyFn                    func(*http.Request) string // KeyFunc
	// plainTail is set when the route keys no credential (VaryCookies,
	// VaryAuthorization), no KeyFunc and, in its region's configuration,
	// no content coding: the key of a request without TLS and keyed
	// headers then ends with Region.keyTailPlain.
	plainTail bool
	// codingKeyed is set once a response of the route varied on
	// Accept-Encoding: its keys then hold the request's coding (compress.go).
	codingKeyed atomic.Bool
}

// Route builds the decorator for a route cached in the named region. An
// unknown region or a bad template is an error here, at construction.
func (c *Cache) Route(region string, opts ...RouteOption) (*Route, error) {
	r, err := c.Region(region)
	if err != nil {
		return nil, err
	}
	o, err := routeOptions(opts)
	if err != nil {
		return nil, err
	}
	rt := &Route{r: r, ttl: o.ttl, stale: o.stale, staleIfError: o.staleIfError, skip: o.skip, keyFn: o.keyFn}
	if o.key != "" {
		if rt.key, err = parseTemplate(o.key); err != nil {
			return nil, err
		}
	}
	if rt.tags, err = compileAll(o.tags); err != nil {
		return nil, err
	}
	rt.staticTags = make([]string, len(rt.tags))
	rt.tagLeads, rt.tagFrom = make([]string, len(rt.tags)), make([]int, len(rt.tags))
	rt.namesFromKey = rt.key == nil
	rt.plainTail = len(r.varyCookies) == 0 && !r.cfg.VaryAuthorization && rt.keyFn == nil && !r.keyCoding
	for i, t := range rt.tags {
		if t.static {
			rt.staticTags[i] = r.tagCounter(t.text)
		} else {
			rt.tagLeads[i] = r.tagCounterPrefix
			if t.parts[0].kind == tplLiteral {
				rt.tagLeads[i] += t.parts[0].text
				rt.tagFrom[i] = 1
			}
		}
		for _, part := range t.parts {
			if part.kind == tplHeader || part.kind == tplHost {
				rt.namesFromKey = false
			}
		}
	}
	rt.keyedHits = (r.mem != nil || r.near != nil) && rt.namesFromKey && !r.cfg.Compress
	c.lives.need(r, rt)
	return rt, nil
}

// handle runs the cache lifecycle for one request: look up, replay a hit,
// or run next (once per key in this process) and store its response when
// it is storable. pattern is the route pattern ("/articles/:id"); p gives
// the route's parameters. It returns next's error, if next ran, except
// errSkipStore. Adapters reach it through adapter.ServeRoute.
func (rt *Route) handle(w http.ResponseWriter, req *http.Request, p params, pattern string, next nextFunc) error {
	var err error
	if rt.keyedHits { // serve's first step, without its call
		err = rt.serveKeyed(w, req, p, nil, pattern, next)
	} else {
		err = rt.serve(w, req, p, nil, pattern, next)
	}
	if err != nil && errors.Is(err, errSkipStore) {
		return nil
	}
	return err
}

// handleCtx is handle for an adapter passing its framework's request
// context, its next handler and its functions (adapter.ServeRouteCtx):
// the parameters and the rest of the chain are reached through them, so
// that neither the adapter nor the engine allocates, or pools, anything
// to carry them. ran reports whether f.Next ran.
func (rt *Route) handleCtx(w http.ResponseWriter, req *http.Request, pattern string, ctx, next any, f *bridge.Funcs) (ran bool, err error) {
	cp := ctxParams{ctx: ctx, get: f.Params}
	nx := func(w http.ResponseWriter, r *http.Request) error {
		ran = true
		return f.Next(ctx, next, w, r)
	}
	if rt.keyedHits { // serve's first step, without its call
		err = rt.serveKeyed(w, req, nil, &cp, pattern, nx)
	} else {
		err = rt.serve(w, req, nil, &cp, pattern, nx)
	}
	if err != nil && errors.Is(err, errSkipStore) {
		return ran, nil
	}
	return ran, err
}

// ctxParams are a route's parameters read from an adapter's request
// context (handleCtx); kept in the request's pooled state while it runs.
type ctxParams struct {
	ctx any
	get func(ctx any, name string) (string, bool)
}

// Get returns the value of the named route parameter.
func (p *ctxParams) Get(name string) (string, bool) {
	if p.get == nil {
		return "", false
	}
	return p.get(p.ctx, name)
}

// Region returns the route's region.
func (rt *Route) Region() *Region { return rt.r }
