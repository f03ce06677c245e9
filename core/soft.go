package core

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/routecache/routecache/core/backend"

	"github.com/bradfitz/gomemcache/memcache"
)

// Soft invalidation marks entries stale instead of unusable: in a region
// with SoftInvalidation, an entry whose only changed counters were bumped
// softly is served as STALE (at once) while one request refreshes it, as
// under stale-while-revalidate. A soft bump moves the counter on like a
// hard one and records the pair (value before, value after); an entry
// recorded with "before" may be served stale for as long as the counter
// still holds "after". Any later bump, soft or hard, ends that grace.
// Nothing is read on a hit: the marks are fetched only when a counter
// does not match, and only in regions that enable SoftInvalidation.

var (
	_ backend.SoftBumper = (*redisBackend)(nil)
	_ backend.SoftBumper = (*memcacheBackend)(nil)
	_ backend.SoftBumper = (*nearBackend)(nil)
)

// softKey is where a counter's soft mark lives ("s|" cannot start a
// counter name, which starts with the region prefix).
func softKey(name string) string { return "s|" + name }

func encodeMark(m backend.SoftMark) string {
	return strconv.FormatUint(m.Old, 10) + ":" + strconv.FormatUint(m.New, 10)
}

func decodeMark(b []byte) backend.SoftMark {
	o, n, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok {
		return backend.SoftMark{}
	}
	ov, err1 := strconv.ParseUint(o, 10, 64)
	nv, err2 := strconv.ParseUint(n, 10, 64)
	if err1 != nil || err2 != nil {
		return backend.SoftMark{}
	}
	return backend.SoftMark{Old: ov, New: nv}
}

// Redis: the counter moves on (bumpScript, nothing published yet), then
// the mark is written and the bump published in one script (markScript):
// a near cache told of the bump finds its mark. The mark lives as long as
// a counter. (The mark's key lives in another cluster slot than the
// counter's, hence two scripts.)

func (b *redisBackend) SoftBump(ctx context.Context, name string) error {
	n, err := b.incr(ctx, name, false)
	if err != nil {
		return err
	}
	ctx, cancel := b.op(ctx)
	defer cancel()
	err = markScript.Run(ctx, b.client, []string{softKey(name)},
		encodeMark(backend.SoftMark{Old: n - 1, New: n}), ttlMillis(b.counterTTL), invalidationChannel, b.message(name)).Err()
	if err != nil {
		return fmt.Errorf("publish invalidation: %w", err)
	}
	return nil
}

func (b *redisBackend) SoftMarks(ctx context.Context, names []string, marks []backend.SoftMark) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = softKey(n)
	}
	res, err := b.getMany(ctx, keys)
	if err != nil {
		return err
	}
	for i, v := range res {
		marks[i] = backend.SoftMark{}
		if s, ok := v.(string); ok {
			marks[i] = decodeMark([]byte(s))
		}
	}
	return nil
}

// Memcached: Increment returns the new value; a counter that had to be
// created has no "before" any entry could hold, so it gets no mark.

func (b *memcacheBackend) SoftBump(ctx context.Context, name string) error {
	n, err := b.increment(ctx, name)
	if err != nil || n == 0 {
		return err
	}
	return b.client.Set(&memcache.Item{Key: softKey(name), Value: []byte(encodeMark(backend.SoftMark{Old: n - 1, New: n})), Expiration: b.counterExpiry()})
}

func (b *memcacheBackend) SoftMarks(_ context.Context, names []string, marks []backend.SoftMark) error {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = softKey(n)
	}
	got, err := b.client.GetMulti(keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		marks[i] = backend.SoftMark{}
		if it, ok := got[k]; ok {
			marks[i] = decodeMark(it.Value)
		}
	}
	return nil
}

// near cache: the inner backend publishes (Redis); the local copy goes.

func (n *nearBackend) SoftBump(ctx context.Context, name string) error {
	sb, ok := n.inner.(backend.SoftBumper)
	if !ok {
		return n.Bump(ctx, name)
	}
	err := sb.SoftBump(ctx, name)
	n.drop(name)
	return err
}

func (n *nearBackend) SoftMarks(ctx context.Context, names []string, marks []backend.SoftMark) error {
	if sb, ok := n.inner.(backend.SoftBumper); ok {
		return sb.SoftMarks(ctx, names, marks)
	}
	clear(marks)
	return nil
}

// bumpCounter bumps a counter, softly when asked and the backend can.
func bumpCounter(ctx context.Context, be backend.Backend, name string, soft bool) error {
	if sb, ok := be.(backend.SoftBumper); ok && soft {
		return sb.SoftBump(ctx, name)
	}
	return be.Bump(ctx, name)
}
