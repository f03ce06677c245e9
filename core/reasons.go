package core

import "slices"

// BypassReason is why a request skipped the cache entirely: the keys of
// Stats.Bypasses, the reason Observer.Bypass receives and the detail of
// the Cache-Status header. The values are stable (Prometheus label values).
type BypassReason string

// NotStoredReason is why a response (or memoized value) was not stored:
// the keys of Stats.NotStored and the reason Observer.NotStored receives.
// The values are stable (Prometheus label values).
type NotStoredReason string

// InvalidationKind is what an InvalidationEvent invalidated.
type InvalidationKind string

// The kinds of InvalidationEvent.
const (
	InvalidationTag    InvalidationKind = "tag"    // tags (Names holds them)
	InvalidationRegion InvalidationKind = "region" // a whole region (Region)
	InvalidationKey    InvalidationKind = "key"    // one key of Region (Names holds it)
)

// BackendOp names a backend operation, in Observer.BackendError and
// Observer.BackendLatency.
type BackendOp string

// The backend operations an Observer hears of.
const (
	OpGet              BackendOp = "get"               // a lookup: an entry and its counters, one round trip
	OpSet              BackendOp = "set"               // an entry stored
	OpEnsureCounters   BackendOp = "ensure-counters"   // counters created before a fill
	OpGetCounters      BackendOp = "get-counters"      // counters read on their own
	OpLease            BackendOp = "lease"             // a fill lease taken (Redis, Memcached)
	OpLeaseRelease     BackendOp = "lease-release"     // a fill lease released
	OpSoftMarks        BackendOp = "soft-marks"        // soft-invalidation marks read
	OpInvalidateKey    BackendOp = "invalidate-key"    // a key counter bumped
	OpInvalidateRegion BackendOp = "invalidate-region" // a region counter bumped
)

// Reasons a request skips the cache entirely (counted in Stats.Bypasses and
// sent in Cache-Status as "fwd=bypass; detail=...").
const (
	BypassMethod        BypassReason = "method"        // not GET or HEAD
	BypassAuthorization BypassReason = "authorization" // Authorization header, region does not vary on it
	BypassCookie        BypassReason = "cookie"        // a cookie the region neither varies on nor ignores
	BypassBody          BypassReason = "body"          // a GET/HEAD carrying a body
	BypassOverride      BypassReason = "override"      // X-HTTP-Method-Override, X-Original-URL and the like
	BypassKey           BypassReason = "key"           // a key or tag template names a missing route parameter
	BypassBackend       BypassReason = "backend-error" // the backend failed: the handler ran uncached
	BypassClosed        BypassReason = "closed"        // the Cache was closed
	BypassHead          BypassReason = "head-miss"     // a HEAD with no stored GET entry: run, not stored
	BypassBreaker       BypassReason = "backend-open"  // the backend's circuit breaker is open
	BypassPrecondition  BypassReason = "precondition"  // Range, If-Range, If-Match or If-Unmodified-Since
	BypassUpgrade       BypassReason = "upgrade"       // a protocol upgrade (Upgrade header, e.g. a WebSocket handshake)
	BypassSkip          BypassReason = "skip"          // the route's SkipIf function said so
)

// Reasons a response was not stored (counted in Stats.NotStored).
const (
	NotStoredStatus       NotStoredReason = "status"        // status not in the region's Statuses
	NotStoredSetCookie    NotStoredReason = "set-cookie"    // the response sets a cookie
	NotStoredCacheControl NotStoredReason = "cache-control" // private, no-store or no-cache
	NotStoredVary         NotStoredReason = "vary"          // Vary: * or a header the region does not key on
	NotStoredFlushed      NotStoredReason = "flushed"       // the handler flushed (a stream)
	NotStoredHijacked     NotStoredReason = "hijacked"      // the connection was hijacked
	NotStoredError        NotStoredReason = "error"         // the handler returned an error or aborted
	NotStoredPanic        NotStoredReason = "panic"         // the handler panicked
	NotStoredTooLarge     NotStoredReason = "too-large"     // body over MaxEntryBytes or the backend's limit
	NotStoredBackend      NotStoredReason = "backend-error" // the store call failed
	NotStoredDropped      NotStoredReason = "dropped"       // an in-process store declined it (backend.ErrDropped; no built-in store does)
	NotStoredEncode       NotStoredReason = "encode"        // a memoized value the codec could not encode
	NotStoredTrailer      NotStoredReason = "trailer"       // the response declares or sends trailers (computed per response)
	// A tag the entry carries was invalidated while it was produced
	// (runtime tags: AddTags, RegionConfig.TagHeaders).
	NotStoredInvalidated NotStoredReason = "invalidated-during-fill"
	NotStoredTooManyTags NotStoredReason = "too-many-tags" // more runtime tags than RegionConfig.MaxTags
)

var bypassReasons = []BypassReason{BypassMethod, BypassAuthorization, BypassCookie, BypassBody, BypassOverride, BypassKey, BypassBackend, BypassClosed, BypassHead, BypassBreaker, BypassPrecondition, BypassUpgrade, BypassSkip}
var notStoredReasons = []NotStoredReason{NotStoredStatus, NotStoredSetCookie, NotStoredCacheControl, NotStoredVary, NotStoredFlushed, NotStoredHijacked, NotStoredError, NotStoredPanic, NotStoredTooLarge, NotStoredBackend, NotStoredDropped, NotStoredEncode, NotStoredTrailer, NotStoredInvalidated, NotStoredTooManyTags}

// BypassReasons returns every reason a request may skip the cache (the
// Bypass* constants), in a fixed order: the possible keys of
// Stats.Bypasses, for exporters that want to publish zeros too.
func BypassReasons() []BypassReason { return slices.Clone(bypassReasons) }

// NotStoredReasons returns every reason a response or value may not be
// stored (the NotStored* constants), in a fixed order: the possible keys
// of Stats.NotStored.
func NotStoredReasons() []NotStoredReason { return slices.Clone(notStoredReasons) }
