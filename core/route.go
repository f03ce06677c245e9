package core

import (
	"errors"
	"net/http"
)

// Next runs the rest of the handler chain, writing to w. Adapters build it
// from their framework's "next"; it returns the handler's error (Echo) or
// a non-nil error when the framework reports the request as failed or
// aborted (Gin), which keeps the response out of the cache.
type Next func(w http.ResponseWriter, r *http.Request) error

// ErrSkipStore, returned by a Next, keeps a response out of the cache
// without reporting an error: Serve returns nil. Adapters use it for
// requests their framework marks as failed without an error value (Gin's
// c.Errors or an abort, an Echo handler that returned nil uncommitted).
var ErrSkipStore = errors.New("routecache: response not storable")

// Route is a compiled cache decorator: one region, a key and tags. It is
// safe for concurrent use and meant to be built once per route.
type Route struct {
	r    *Region
	key  *template // nil: the default key
	tags []*template
	// staticTags holds the counter names of tags without placeholders.
	staticTags []string
	// namesFromKey is set when the route's counter names are a function of
	// its canonical key (the default key, no {header:...} in a tag): an
	// entry this route stored under the request's key then depends on
	// exactly the counters the request named, and a hit compares values
	// only.
	namesFromKey bool
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
	rt := &Route{r: r}
	if o.key != "" {
		if rt.key, err = parseTemplate(o.key); err != nil {
			return nil, err
		}
	}
	if rt.tags, err = compileAll(o.tags); err != nil {
		return nil, err
	}
	rt.staticTags = make([]string, len(rt.tags))
	rt.namesFromKey = rt.key == nil
	for i, t := range rt.tags {
		if t.static {
			rt.staticTags[i] = r.tagCounter(t.text)
		}
		for _, part := range t.parts {
			if part.kind == tplHeader {
				rt.namesFromKey = false
			}
		}
	}
	return rt, nil
}

// Region returns the route's region.
func (rt *Route) Region() *Region { return rt.r }
