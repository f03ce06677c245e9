package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// Invalidator is a compiled invalidating decorator for mutating routes.
type Invalidator struct {
	soft bool
	// remote is set when an invalidation reaches a shared backend: after
	// Close such a route refuses requests rather than change data it can
	// no longer invalidate.
	remote  bool
	c       *Cache
	tags    []*template
	regions []*Region
	keys    map[*Region][]*template
}

// Invalidator builds the decorator of a mutating route: after its handler
// answers 2xx, and before that answer reaches the client, it invalidates
// the given Tags, Regions and Keys. Unknown regions and bad templates are
// errors here.
func (c *Cache) Invalidator(opts ...InvalidateOption) (*Invalidator, error) {
	o, err := invalidateOptions(opts)
	if err != nil {
		return nil, err
	}
	iv := &Invalidator{c: c, soft: o.soft, keys: map[*Region][]*template{}}
	if iv.tags, err = compileAll(o.tags); err != nil {
		return nil, err
	}
	for _, name := range o.regions {
		r, err := c.Region(name)
		if err != nil {
			return nil, err
		}
		iv.regions = append(iv.regions, r)
	}
	for name, tpls := range o.keys {
		r, err := c.Region(name)
		if err != nil {
			return nil, err
		}
		if iv.keys[r], err = compileAll(tpls); err != nil {
			return nil, err
		}
	}
	if len(iv.tags) == 0 && len(iv.regions) == 0 && len(iv.keys) == 0 {
		return nil, errors.New("routecache: Invalidator needs Tags, Regions or Keys")
	}
	for _, r := range c.regions {
		if r.be.Remote() && (len(iv.tags) > 0 || slices.Contains(iv.regions, r) || iv.keys[r] != nil) {
			iv.remote = true
		}
	}
	return iv, nil
}

// handle runs next and, when it answers 2xx, invalidates before the status
// line is sent. Adapters reach it through adapter.ServeInvalidator.
//
// When an invalidation cannot be applied then (the backend refused it: it
// is queued and retried, see ErrInvalidationPending; or the Cache was
// closed meanwhile), the 2xx is not sent: the client gets 503 with
// Retry-After: 1 and X-Cache-Invalidation: pending, and the handler's
// body is discarded. A 2xx therefore always means the invalidation was
// applied; a 503 means the change may have been made but is not yet
// visible everywhere (retry the request: it is made again and
// invalidates again). A tag or key template naming a missing route
// parameter is logged and the response goes out unchanged.
//
// After Close, a route whose invalidations reach a shared backend (Redis,
// Memcached, a Store) answers 503 without running the handler; a
// memory-only one runs it uncached. Close waits for the requests already
// running (see Config.CloseTimeout).
func (iv *Invalidator) handle(w http.ResponseWriter, req *http.Request, p params, next nextFunc) error {
	if !iv.c.inflight.enter() {
		if iv.remote {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "503 shutting down: this change could not be invalidated in the cache", http.StatusServiceUnavailable)
			return nil
		}
		return ignoreSkip(next(w, req))
	}
	defer iv.c.inflight.leave()
	gate := &pendingGate{w: w}
	rw := &recorder{w: gate, onCommit: func(rw *recorder) {
		if rw.status >= 200 && rw.status < 300 {
			if err := iv.fire(req, p); errors.Is(err, ErrInvalidationPending) || errors.Is(err, ErrClosed) {
				gate.refuse(rw)
			}
		}
	}}
	err := next(rw, req)
	if errors.Is(err, errSkipStore) {
		// The framework reports a failure (Gin's c.Errors, an abort): no
		// invalidation unless the handler already committed a 2xx, and an
		// uncommitted response is left for the framework to finish.
		return nil
	}
	if err == nil {
		rw.finish()
	}
	return err
}

func ignoreSkip(err error) error {
	if errors.Is(err, errSkipStore) {
		return nil
	}
	return err
}

// fire runs the invalidations; its error joins those the backend did not
// take (wrapping ErrInvalidationPending, or ErrClosed).
func (iv *Invalidator) fire(req *http.Request, p params) error {
	ctx := context.WithoutCancel(req.Context())
	var errs []error
	if len(iv.tags) > 0 {
		tags := make([]string, 0, len(iv.tags))
		for _, t := range iv.tags {
			if tag, ok := t.expand(req, p); ok {
				tags = append(tags, tag)
			} else {
				errs = append(errs, fmt.Errorf("tag template %q: missing route parameter", t.raw))
			}
		}
		invalidate := iv.c.InvalidateTags
		if iv.soft {
			invalidate = iv.c.InvalidateTagsSoft
		}
		if err := invalidate(ctx, tags...); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range iv.regions {
		invalidate := iv.c.InvalidateRegion
		if iv.soft {
			invalidate = iv.c.InvalidateRegionSoft
		}
		if err := invalidate(ctx, r.name); err != nil {
			errs = append(errs, err)
		}
	}
	for r, tpls := range iv.keys {
		for _, t := range tpls {
			k, ok := t.expand(req, p)
			if !ok {
				errs = append(errs, fmt.Errorf("key template %q: missing route parameter", t.raw))
				continue
			}
			if err := iv.c.InvalidateKey(ctx, r.name, k); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		iv.c.log.Error("routecache: invalidation after "+req.Method+" "+req.URL.Path+" failed", "err", errors.Join(errs...))
	}
	return errors.Join(errs...)
}
