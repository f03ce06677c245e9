package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/routecache/routecache/core/backend"
)

// InvalidateTagsSoft marks every entry stored with any of the tags stale
// rather than unusable, in regions with SoftInvalidation (elsewhere it is
// InvalidateTags): the next request is answered from the stale entry at
// once (X-Cache: STALE) while the entry is refreshed in the background.
func (c *Cache) InvalidateTagsSoft(ctx context.Context, tags ...string) error {
	return c.invalidateTags(ctx, true, tags)
}

// InvalidateRegionSoft is InvalidateRegion marking entries stale rather
// than unusable (see InvalidateTagsSoft).
func (c *Cache) InvalidateRegionSoft(ctx context.Context, name string) error {
	return c.invalidateRegion(ctx, true, name)
}

// InvalidateTags makes every entry that was stored with any of the tags
// unusable, in every region, including entries whose handler added the
// tags at run time (AddTags). It costs one counter update per tag and
// backend, plus one of the backend's tag epoch, whatever the number of
// entries.
//
// An increment the backend does not take is not lost: it is queued and
// retried until applied, and the error returned wraps
// ErrInvalidationPending. Until it is applied this process serves
// nothing from the regions on that backend (see docs/invalidation.md).
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	return c.invalidateTags(ctx, false, tags)
}

// invalidateTags bumps each tag's counter in every counter space, softly
// (soft.go) or not.
func (c *Cache) invalidateTags(ctx context.Context, soft bool, tags []string) error {
	var errs []error
	for _, t := range tags {
		if t == "" {
			return errors.New("routecache: empty tag")
		}
	}
	c.invMu.RLock()
	defer c.invMu.RUnlock()
	spaces := c.counterSpaces()
	if c.shut {
		var regions []*Region
		for _, g := range spaces {
			regions = append(regions, g.regions[0])
		}
		return c.lostAfterClose(fmt.Sprintf("invalidate tags %q", tags), regions...)
	}
	pending := false
	for _, g := range spaces {
		q := g.regions[0].q
		queued := false // once one bump here is queued, queue the rest without waiting
		// The tag epoch first, then the tags (runtimetags.go): a fill that
		// reads a tag's counter after its bump reads the epoch after its
		// own. A failed epoch bump is queued like any other, ahead of the
		// tags' (the queue applies in order).
		if len(tags) == 0 {
			continue
		}
		if err := q.apply(ctx, backend.Event{Counter: g.regions[0].epochCounter, Kind: backend.EventCounter}, true); err != nil {
			errs = append(errs, err)
			queued = true
		}
		for _, t := range tags {
			ev := backend.Event{Counter: g.regions[0].tagCounter(t), Kind: backend.EventTag, Name: t, Soft: soft} // the counter routes read (hashed where needed)
			if err := q.apply(ctx, ev, !queued); err != nil {
				errs = append(errs, err)
				queued = true
			}
		}
		pending = pending || queued
	}
	if len(tags) > 0 {
		var reached []*Region
		for _, g := range spaces {
			reached = append(reached, g.regions...)
		}
		c.recordInvalidation(InvalidationEvent{Kind: "tag", Names: append([]string(nil), tags...), Soft: soft, Pending: pending}, uint64(len(tags)), reached...)
	}
	if len(errs) > 0 {
		c.log.Error("routecache: invalidate tags: queued for retry", "tags", tags, "soft", soft, "err", errors.Join(errs...))
		return fmt.Errorf("routecache: invalidate tags: %w", errors.Join(errs...))
	}
	return nil
}

// InvalidateRegion makes every entry of the named region unusable. A
// failure is queued and retried, as for InvalidateTags.
func (c *Cache) InvalidateRegion(ctx context.Context, name string) error {
	return c.invalidateRegion(ctx, false, name)
}

func (c *Cache) invalidateRegion(ctx context.Context, soft bool, name string) error {
	r, err := c.Region(name)
	if err != nil {
		return err
	}
	c.invMu.RLock()
	defer c.invMu.RUnlock()
	if c.shut {
		return c.lostAfterClose(fmt.Sprintf("invalidate region %q", name), r)
	}
	if err := r.q.apply(ctx, backend.Event{Counter: r.regionCounter, Kind: backend.EventRegion, Region: name, Soft: soft}, true); err != nil {
		r.recordError("invalidate-region", err)
		c.recordInvalidation(InvalidationEvent{Kind: "region", Region: name, Soft: soft, Pending: true}, 1, r)
		return fmt.Errorf("routecache: invalidate region %q: %w", name, err)
	}
	c.recordInvalidation(InvalidationEvent{Kind: "region", Region: name, Soft: soft}, 1, r)
	return nil
}

// InvalidateKey makes the entries stored under one key of a region
// unusable. The key is the expanded Key template of the route (for
// example "article:42" for Key("article:{id}")), or the request path
// ("/articles/42") for routes using the default key; every query string
// and vary variant of it goes. A failure is queued and retried, as for
// InvalidateTags.
func (c *Cache) InvalidateKey(ctx context.Context, region, key string) error {
	r, err := c.Region(region)
	if err != nil {
		return err
	}
	if key == "" {
		return errors.New("routecache: empty key")
	}
	c.invMu.RLock()
	defer c.invMu.RUnlock()
	if c.shut {
		return c.lostAfterClose(fmt.Sprintf("invalidate key %q in region %q", key, region), r)
	}
	if err := r.q.apply(ctx, backend.Event{Counter: r.keyCounter(key), Kind: backend.EventKey, Region: region, Name: key}, true); err != nil {
		r.recordError("invalidate-key", err)
		c.recordInvalidation(InvalidationEvent{Kind: "key", Region: region, Names: []string{key}, Pending: true}, 1, r)
		return fmt.Errorf("routecache: invalidate key %q in region %q: %w", key, region, err)
	}
	c.recordInvalidation(InvalidationEvent{Kind: "key", Region: region, Names: []string{key}}, 1, r)
	return nil
}

type counterSpace struct {
	be      backend.Backend
	prefix  string
	regions []*Region
}

// counterSpaces lists each distinct (backend, prefix) pair once, since tag
// counters live there and are shared by the regions in it.
func (c *Cache) counterSpaces() []counterSpace {
	type k struct {
		be     backend.Backend
		prefix string
	}
	idx := map[k]int{}
	var out []counterSpace
	for _, name := range c.Regions() {
		r := c.regions[name]
		kk := k{r.be, r.cfg.Prefix}
		i, ok := idx[kk]
		if !ok {
			i = len(out)
			idx[kk] = i
			out = append(out, counterSpace{be: r.be, prefix: r.cfg.Prefix})
		}
		out[i].regions = append(out[i].regions, r)
	}
	return out
}
