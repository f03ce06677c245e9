package core

import (
	"context"

	"github.com/routecache/routecache/core/backend"
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

// bumpCounter bumps a counter, softly when asked and the backend can.
func bumpCounter(ctx context.Context, be backend.Backend, name string, soft bool) error {
	if sb, ok := be.(backend.SoftBumper); ok && soft {
		return sb.SoftBump(ctx, name)
	}
	return be.Bump(ctx, name)
}
