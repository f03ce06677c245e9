package core

// Soft invalidation marks entries stale instead of unusable: in a region
// with SoftInvalidation, an entry whose only changed counters were bumped
// softly is served as STALE (at once) while one request refreshes it, as
// under stale-while-revalidate. A soft bump moves the counter on like a
// hard one and records the pair (value before, value after); an entry
// recorded with "before" may be served stale for as long as the counter
// still holds "after". Any later bump, soft or hard, ends that grace.
// Nothing is read on a hit: the marks are fetched only when a counter
// does not match, and only in regions that enable SoftInvalidation.
// (The bump itself is invalqueue.go's bump.)
