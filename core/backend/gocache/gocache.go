// Package gocache runs routecache on any gocache store
// (store.StoreInterface) the application built: RegionConfig.Store. It
// has no URL scheme; the engine wraps the store itself.
package gocache

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/routecache/routecache/core/backend"
)

var _ backend.Backend = (*Backend)(nil)

// Backend runs on any gocache store.StoreInterface the user built. The
// interface has no multi-get and no atomic counters, so a lookup costs one
// Get per counter plus one for the entry, and an invalidation writes a new
// random value (safe under races: a value is never reused).
type Backend struct {
	st store.StoreInterface
}

// New wraps a gocache store.
func New(st store.StoreInterface) *Backend { return &Backend{st: st} }

// Load reads the counters, then the entry: one Get each.
func (s *Backend) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	if err := s.Counters(ctx, names, vals); err != nil {
		return nil, err
	}
	v, err := s.st.Get(ctx, strings.Clone(key)) // a store of unknown code may keep it
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	switch t := v.(type) {
	case string:
		return backend.DecodeString(t) // immutable: the entry views it
	case []byte:
		return backend.DecodeEntry(t) // the store may reuse it: copied
	}
	return nil, backend.ErrCorrupt
}

// Counters reads each counter with a Get (0 when missing).
func (s *Backend) Counters(ctx context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		v, err := s.st.Get(ctx, n)
		if err != nil {
			if isNotFound(err) {
				vals[i] = 0
				continue
			}
			return err
		}
		vals[i] = backend.ParseCounter(v)
	}
	return nil
}

// Ensure writes a fresh value for each missing counter.
func (s *Backend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	for i, n := range names {
		if vals[i] != 0 {
			continue
		}
		v := backend.FreshCounter()
		// n may alias the caller's memory (see backend.Backend): a store
		// may keep its key.
		if err := s.st.Set(ctx, strings.Clone(n), []byte(strconv.FormatUint(v, 10))); err != nil {
			return err
		}
		vals[i] = v
	}
	return nil
}

// Store writes the encoded entry. The key is copied: a store of unknown
// code may keep it.
func (s *Backend) Store(ctx context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	return s.st.Set(ctx, strings.Clone(key), e.Encode(), store.WithExpiration(ttl))
}

// Bump writes a fresh random value: safe under races, since a value is
// never reused.
func (s *Backend) Bump(ctx context.Context, name string) error {
	return s.st.Set(ctx, strings.Clone(name), []byte(strconv.FormatUint(backend.FreshCounter(), 10)))
}

// Remote is true: the store's code is unknown, so keys are hashed.
func (s *Backend) Remote() bool { return true }

// Close does nothing: the store is the application's.
func (s *Backend) Close() error { return nil }

func isNotFound(err error) bool {
	return errors.Is(err, store.NotFound{})
}
