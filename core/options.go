package core

import "errors"

// Option configures a cached route or an invalidating route.
type Option func(*options) error

type options struct {
	soft    bool
	key     string
	tags    []string
	regions []string
	keys    map[string][]string
}

// Tags declares the tags of a cached route's entries, or the tags a
// mutating route invalidates. Templates may use {param}, {query:name},
// {header:Name}, {method} and {path}.
func Tags(templates ...string) Option {
	return func(o *options) error {
		o.tags = append(o.tags, templates...)
		return nil
	}
}

// Key replaces the default key of a cached route by a template, for
// example "article:{id}"; routes with the same template in one region
// share entries. Region vary headers, cookies and the principal still
// apply, and the method is always part of the key.
func Key(template string) Option {
	return func(o *options) error {
		if o.key != "" {
			return errors.New("routecache: Key given twice")
		}
		o.key = template
		return nil
	}
}

// Soft makes a mutating route's tag and region invalidations soft (see
// Cache.InvalidateTagsSoft): entries are marked stale, not unusable, in
// regions with SoftInvalidation. Key invalidations stay hard.
func Soft() Option {
	return func(o *options) error {
		o.soft = true
		return nil
	}
}

// Regions names whole regions a mutating route invalidates.
func Regions(names ...string) Option {
	return func(o *options) error {
		o.regions = append(o.regions, names...)
		return nil
	}
}

// Keys names keys of a region that a mutating route invalidates: Key
// templates ("article:{id}") or, for routes on the default key, "{path}".
func Keys(region string, templates ...string) Option {
	return func(o *options) error {
		if o.keys == nil {
			o.keys = map[string][]string{}
		}
		o.keys[region] = append(o.keys[region], templates...)
		return nil
	}
}

func applyOptions(opts []Option) (*options, error) {
	o := &options{}
	for _, f := range opts {
		if f == nil {
			continue
		}
		if err := f(o); err != nil {
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
