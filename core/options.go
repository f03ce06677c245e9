package core

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// RouteOption configures a cached route: Key, Tags, TTL, StaleFor,
// SkipIf and KeyFunc. Cache.Route,
// Cache.Middleware and the adapters' Cache take them.
type RouteOption interface {
	applyRoute(*options) error
}

// InvalidateOption configures an invalidating route: Tags, Regions, Keys
// and Soft. Cache.Invalidator, Cache.InvalidateMiddleware and the
// adapters' Invalidate take them.
type InvalidateOption interface {
	applyInvalidate(*options) error
}

// TagOption is the option Tags returns: both a RouteOption (the tags of a
// cached route's entries) and an InvalidateOption (the tags a mutating
// route invalidates).
type TagOption struct{ templates []string }

func (t TagOption) applyRoute(o *options) error {
	o.tags = append(o.tags, t.templates...)
	return nil
}

func (t TagOption) applyInvalidate(o *options) error {
	o.tags = append(o.tags, t.templates...)
	return nil
}

// routeOption is a RouteOption that only cached routes take.
type routeOption func(*options) error

func (f routeOption) applyRoute(o *options) error { return f(o) }

// invalidateOption is an InvalidateOption that only invalidating routes
// take.
type invalidateOption func(*options) error

func (f invalidateOption) applyInvalidate(o *options) error { return f(o) }

type options struct {
	soft    bool
	key     string
	tags    []string
	regions []string
	keys    map[string][]string
	// A route's own lifetime (TTL, StaleFor): 0 and -1 mean the region's.
	ttl, stale, staleIfError time.Duration
	skip                     func(*http.Request) bool
	keyFn                    func(*http.Request) string
}

// Tags declares the tags of a cached route's entries, or the tags a
// mutating route invalidates. Templates may use {param}, {query:name},
// {header:Name}, {method} and {path}.
func Tags(templates ...string) TagOption {
	return TagOption{templates: templates}
}

// Key replaces the default key of a cached route by a template, for
// example "article:{id}"; routes with the same template in one region
// share entries. Region vary headers, cookies and the principal still
// apply, and the method is always part of the key.
func Key(template string) RouteOption {
	return routeOption(func(o *options) error {
		if o.key != "" {
			return errors.New("routecache: Key given twice")
		}
		o.key = template
		return nil
	})
}

// TTL sets how long the route's entries are fresh, in place of its
// region's TTL: Pyramid's expires=. The region's StatusTTL still applies
// to the statuses it lists, and with UseCacheControl the handler may
// shorten it. d must be positive.
func TTL(d time.Duration) RouteOption {
	return routeOption(func(o *options) error {
		switch {
		case d <= 0:
			return fmt.Errorf("routecache: TTL %v must be positive", d)
		case o.ttl != 0:
			return errors.New("routecache: TTL given twice")
		}
		o.ttl = d
		return nil
	})
}

// StaleFor sets the route's stale windows in place of its region's Stale
// (stale-while-revalidate) and StaleIfError: how long after its TTL an
// entry is served stale while one request refreshes it, and how long it
// may stand in for a failing handler. 0 turns a window off; negative is
// an error.
func StaleFor(stale, staleIfError time.Duration) RouteOption {
	return routeOption(func(o *options) error {
		switch {
		case stale < 0 || staleIfError < 0:
			return fmt.Errorf("routecache: StaleFor(%v, %v): windows must not be negative", stale, staleIfError)
		case o.stale >= 0:
			return errors.New("routecache: StaleFor given twice")
		}
		o.stale, o.staleIfError = stale, staleIfError
		return nil
	})
}

// SkipIf bypasses the cache for requests f reports true for, before any
// lookup: the handler runs uncached and nothing is stored. Such requests
// are counted under BypassSkip. f runs on every request of the route, so
// it must be fast and safe for concurrent use.
func SkipIf(f func(*http.Request) bool) RouteOption {
	return routeOption(func(o *options) error {
		if f == nil {
			return errors.New("routecache: SkipIf: nil function")
		}
		if o.skip != nil {
			return errors.New("routecache: SkipIf given twice")
		}
		o.skip = f
		return nil
	})
}

// KeyFunc adds an application-derived part to every key of the route,
// for example a tenant that earlier middleware took from a verified
// token: requests with different parts never share an entry. The part
// enters the key as an HMAC under Config.Secret, like credentials, so its
// value never reaches the backend in clear. f runs on every request of
// the route (after the bypass checks), so it must be fast and safe for
// concurrent use; "" is a part like any other.
func KeyFunc(f func(*http.Request) string) RouteOption {
	return routeOption(func(o *options) error {
		if f == nil {
			return errors.New("routecache: KeyFunc: nil function")
		}
		if o.keyFn != nil {
			return errors.New("routecache: KeyFunc given twice")
		}
		o.keyFn = f
		return nil
	})
}

// Soft makes a mutating route's tag and region invalidations soft (see
// Cache.InvalidateTagsSoft): entries are marked stale, not unusable, in
// regions with SoftInvalidation. Key invalidations stay hard.
func Soft() InvalidateOption {
	return invalidateOption(func(o *options) error {
		o.soft = true
		return nil
	})
}

// Regions names whole regions a mutating route invalidates.
func Regions(names ...string) InvalidateOption {
	return invalidateOption(func(o *options) error {
		o.regions = append(o.regions, names...)
		return nil
	})
}

// Keys names keys of a region that a mutating route invalidates: Key
// templates ("article:{id}") or, for routes on the default key, "{path}".
func Keys(region string, templates ...string) InvalidateOption {
	return invalidateOption(func(o *options) error {
		if o.keys == nil {
			o.keys = map[string][]string{}
		}
		o.keys[region] = append(o.keys[region], templates...)
		return nil
	})
}

// routeOptions applies the options of a cached route.
func routeOptions(opts []RouteOption) (*options, error) {
	o := &options{stale: -1, staleIfError: -1}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.applyRoute(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// invalidateOptions applies the options of an invalidating route.
func invalidateOptions(opts []InvalidateOption) (*options, error) {
	o := &options{}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.applyInvalidate(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func compileAll(list []string) ([]*template, error) {
	out := make([]*template, 0, len(list))
	for _, s := range list {
		t, err := parseTemplate(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
