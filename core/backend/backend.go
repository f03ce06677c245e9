// Package backend is the contract between routecache's engine and the
// stores it caches in: the Backend interface every store implements, the
// optional capabilities a store may add (soft invalidation, invalidation
// events told to other instances, leases, bounded reads, counter
// lifetimes, key shaping, connection preparation),
// the stored envelope (Entry) and the registry of URL schemes (Register,
// Open), in the manner of database/sql/driver.
//
// The built-in drivers live in the packages below this one (memory,
// redis, memcache, near, gocache) and register their schemes in init
// functions, exactly as a third party's would. A driver is tested with
// backendtest.Run, the suite every built-in driver passes.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Backend is what the engine needs from storage: entries under keys, and
// version counters under names. Counter values are never 0 once they
// exist; 0 in a result means "missing", which the engine treats as a
// miss. Implementations must be safe for concurrent use.
//
// Ownership. The key and the counter names passed to any method may
// alias the engine's pooled request memory: they are valid only during
// the call, and a backend copies (strings.Clone) whatever it keeps past
// it: a key or name it stores in a map, a cache or a client that may
// hold on to it. The vals (and marks) slices belong to the caller too;
// the backend writes its results into them and keeps no reference. An
// Entry handed to Store is immutable from then on and may be shared with
// readers (the bytes of its strings are never written either: a backend
// may keep its Key as the key it stores it under, without a copy); a
// backend may keep it (an in-process store) but must not
// modify it, except that before storing it may replace its Body with an
// exactly sized copy holding the same bytes. An Entry returned by Load or
// Poll may be shared (with other readers, with the backend's own cache):
// the caller must not modify it.
type Backend interface {
	// Load fetches the entry under key (nil if absent) and fills vals
	// with the current value of each named counter, in one round trip
	// where the store allows. A stored value that cannot be decoded is
	// reported as ErrCorrupt together with the counters.
	Load(ctx context.Context, key string, counters []string, vals []uint64) (*Entry, error)
	// Counters fills vals with the named counters' values (0 = missing).
	Counters(ctx context.Context, names []string, vals []uint64) error
	// Ensure creates each missing counter (vals[i] == 0) with a fresh
	// value (FreshCounter) and stores in vals the value now current.
	Ensure(ctx context.Context, names []string, vals []uint64) error
	// Store writes an entry that expires after ttl. An entry larger than
	// the backend accepts is refused with an error wrapping ErrTooLarge.
	Store(ctx context.Context, key string, e *Entry, ttl time.Duration) error
	// Bump changes a counter to a value it never had (an invalidation),
	// creating it if missing.
	Bump(ctx context.Context, counter string) error
	// Remote reports whether the store is shared beyond this process:
	// keys are then shaped for any store's rules (see KeyForm), and the
	// engine guards the backend with a circuit breaker.
	Remote() bool
	// Close releases the backend's resources.
	Close() error
}

// ErrTooLarge reports an entry larger than the backend accepts.
var ErrTooLarge = errors.New("routecache: entry larger than the backend accepts")

// ErrDropped reports an entry an in-process store declined to keep (an
// admission policy or busy buffers); the request is served uncached. No
// built-in store returns it (the memory store admits every entry within
// its budget); it is there for backends of your own.
var ErrDropped = errors.New("routecache: memory store dropped the entry")

// ErrQueued marks a failure that never reached the store: the operation
// waited for a connection of its own process (a burst queueing for the
// pool) and gave up. The engine's circuit breaker does not count it: it
// says nothing about the store's health.
var ErrQueued = errors.New("routecache: no connection free in time (the process's own queue)")

// SoftMark is the pair a soft bump records: the counter's value before
// and after it.
type SoftMark struct{ Old, New uint64 }

// SoftBumper is implemented by backends that support soft invalidation:
// an entry recorded with Old may be served stale for as long as the
// counter holds New. On the others a soft invalidation is a hard one.
type SoftBumper interface {
	// SoftBump moves the counter on as Bump does and records the mark.
	SoftBump(ctx context.Context, name string) error
	// SoftMarks fills marks with each counter's last mark (zero if none).
	SoftMarks(ctx context.Context, names []string, marks []SoftMark) error
}

// EventKind is what an invalidation Event invalidated.
type EventKind uint8

const (
	// EventCounter is an event that names only its counter: what a
	// receiver makes of a message in the previous format (a counter name
	// and nothing else), which says nothing it could report.
	EventCounter EventKind = iota
	// EventTag is a tag's invalidation (Name is the tag).
	EventTag
	// EventRegion is a whole region's invalidation (Region).
	EventRegion
	// EventKey is one key's invalidation (Region, and Name is the key).
	EventKey
)

// Event is what one counter bump invalidated: the engine hands it to an
// EventBumper with the bump, and a backend that tells other instances of
// it (a Redis near cache's pub/sub) hands it to their engines through
// Options.OnRemote, so that no receiver reads the invalidation back from a
// counter name (which may be a hash).
type Event struct {
	// Counter is the counter bumped, under the name the engine passed to
	// the backend (hashed when long or not printable: KeyForm).
	Counter string
	// Kind says what Region and Name hold.
	Kind EventKind
	// Region is the region of an EventRegion or EventKey.
	Region string
	// Name is the tag of an EventTag, the key of an EventKey; any bytes.
	Name string
	// Soft asks for a soft bump (SoftBumper) where the backend has one,
	// and tells the receivers the invalidation was soft.
	Soft bool
}

// EventBumper is implemented by backends that tell other instances what
// an invalidation was (Redis publishes it with the bump). The engine bumps
// through BumpEvent when the backend has it, and through SoftBump or Bump
// otherwise. The strings in ev follow the ownership rule of Backend's
// methods: valid only during the call.
type EventBumper interface {
	// BumpEvent bumps ev.Counter as Bump does (as SoftBump does when
	// ev.Soft is set and the backend is a SoftBumper) and tells the other
	// instances of ev.
	BumpEvent(ctx context.Context, ev Event) error
}

// Leaser is implemented by backends shared between instances: a lease on
// a key lets one instance fill it while the others wait for the entry.
type Leaser interface {
	// Acquire takes the lease for ttl; ok is false when another holds it.
	Acquire(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error)
	// Release gives the lease back if token still holds it.
	Release(ctx context.Context, key, token string) error
}

// LeasePoller is implemented by the leasers: one read of an entry, its
// counters and whether a lease is still held, from the shared store
// itself (never from a near cache's local copies), in one round trip
// where the store allows. An instance waiting for another's fill polls
// with it.
type LeasePoller interface {
	Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (e *Entry, held bool, err error)
}

// EntryBounder is a backend that bounds what a lookup reads of a stored
// value by the largest entry it may hold, so that a huge value planted
// under an entry key costs a bounded read and is that key's corrupt entry
// (a miss, overwritten by the fill), not a read that times out as a
// backend error and opens the breaker for every key. Entries larger than
// the bound are refused when stored (ErrTooLarge), so that none is ever
// read back as corrupt.
type EntryBounder interface {
	// BoundEntries raises the bound to fit the entries of a region whose
	// bodies are capped at maxBody bytes. It is called for each region
	// using the backend, before the first request.
	BoundEntries(maxBody int64)
}

// EntryAllowance is what an encoded entry may hold besides its body: the
// envelope, headers, ETag, canonical key and counter snapshot. Real
// entries use a few KiB of it.
const EntryAllowance = 1 << 20

// MaxEntrySize is the largest encoded entry of a region whose bodies are
// capped at maxBody bytes.
func MaxEntrySize(maxBody int64) int64 {
	if maxBody > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return maxBody + EntryAllowance
}

// CounterLifer is implemented by backends whose counters expire (Redis,
// Memcached): the engine gives each the lifetime its regions need, before
// the first request.
type CounterLifer interface {
	SetCounterTTL(d time.Duration)
}

// KeyForm is how the engine forms the entry keys and counter names it
// passes to a backend.
type KeyForm uint8

const (
	// KeysPlain passes canonical keys and logical counter names as they
	// are. It is the form of a backend whose Remote is false.
	KeysPlain KeyForm = iota
	// KeysHashed passes entry keys as EntryKey forms them and counter
	// names shaped for any store (short printable names as they are,
	// others hashed under the prefix): within Memcached's 250 bytes with
	// no spaces. It is the form of a backend whose Remote is true.
	KeysHashed
	// KeysNear passes canonical entry keys (the backend keeps them as
	// they are in process and forms RemoteEntryKey itself when a key
	// leaves it) and counter names as KeysHashed does.
	KeysNear
)

// KeyFormer is implemented by backends that want a KeyForm other than
// the one Remote implies.
type KeyFormer interface {
	KeyForm() KeyForm
}

// FormOf is the KeyForm the engine uses with be.
func FormOf(be Backend) KeyForm {
	if kf, ok := be.(KeyFormer); ok {
		return kf.KeyForm()
	}
	if be.Remote() {
		return KeysHashed
	}
	return KeysPlain
}

// RegionCounters are the region counters of the regions sharing one key
// prefix, which a backend that detects a restarted or restored server
// bumps (entries stored before may be older than the server's counters).
type RegionCounters struct {
	Prefix   string
	Counters []string
}

// Preparer is implemented by backends that prepare before the first
// request: the engine calls Prepare once, after every region using the
// backend is known, with their region counters grouped by prefix. It
// opens connections ahead of the first requests (a burst right after
// start finds them ready), bounded in time by the backend's own
// operation timeout, and fails open: it never fails and waits little
// when the server is down.
type Preparer interface {
	Prepare(regions []RegionCounters)
}

// Options are what the engine gives every backend it opens.
type Options struct {
	// Logger receives what the backend (and its client) logs; nil means
	// slog.Default().
	Logger *slog.Logger
	// OnRemote, if set, is told of each invalidation another instance
	// made that the backend hears of (a near cache's pub/sub), as the
	// publisher's EventBumper described it (Kind EventCounter, with only
	// the Counter, for a publisher that sent the counter name alone). It
	// may be called from the backend's own goroutines, concurrently; the
	// event's strings are the receiver's to keep.
	OnRemote func(ev Event)
}

// Log is o.Logger, or slog.Default() when unset.
func (o Options) Log() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// Opener opens a backend from its URL (the scheme is the one it was
// registered under). Errors name the URL by DisplayURL(u), never by its
// full text, which may hold a password.
type Opener func(u *url.URL, opts Options) (Backend, error)

var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// Register makes a backend available under a URL scheme. It panics if
// open is nil or the scheme is already registered, as database/sql's
// Register does: both are programming errors found at start.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	if open == nil {
		panic("routecache: backend.Register of a nil opener for " + scheme)
	}
	if _, dup := openers[scheme]; dup {
		panic("routecache: backend.Register called twice for " + scheme)
	}
	openers[scheme] = open
}

// Schemes lists the registered schemes, sorted, each with "://".
func Schemes() []string {
	openersMu.RLock()
	defer openersMu.RUnlock()
	names := make([]string, 0, len(openers))
	for k := range openers {
		names = append(names, k+"://")
	}
	sort.Strings(names)
	return names
}

// DisplayURL is how errors and logs quote a backend URL: as the user wrote
// it, with any password replaced by "xxxxx". url.URL.Redacted alone would
// turn "memory://?max_bytes=1GiB" into "memory:?max_bytes=1GiB".
func DisplayURL(u *url.URL) string {
	s := u.Redacted()
	if u.Scheme != "" && u.Opaque == "" && u.Host == "" && u.User == nil && !u.OmitHost &&
		!strings.HasPrefix(s, u.Scheme+"://") {
		s = u.Scheme + "://" + strings.TrimPrefix(s, u.Scheme+":")
	}
	return s
}

// Hosts splits a URL's comma-separated host:port list, checking each
// entry; errors name the bad entry, for the driver to prefix with the URL.
func Hosts(u *url.URL) ([]string, error) {
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return nil, fmt.Errorf("bad host %q (want host:port)", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("bad port in %q (want 1-65535)", h)
		}
	}
	return hosts, nil
}

// ParseURL parses a backend URL and finds the opener of its scheme.
func ParseURL(raw string) (*url.URL, Opener, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL: report only the reason, since the URL
		// may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("backend URL does not parse: %w", err)
	}
	if u.Scheme == "" {
		return nil, nil, fmt.Errorf("backend %q: missing scheme (want one of %s)", DisplayURL(u), strings.Join(Schemes(), ", "))
	}
	openersMu.RLock()
	open, ok := openers[u.Scheme]
	openersMu.RUnlock()
	if !ok {
		return nil, nil, fmt.Errorf("backend %q: unknown scheme %q (want one of %s)", DisplayURL(u), u.Scheme, strings.Join(Schemes(), ", "))
	}
	return u, open, nil
}

// Open opens the backend a URL names, with the opener its scheme was
// registered with.
func Open(raw string, opts Options) (Backend, error) {
	u, open, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return open(u, opts)
}

// Registered reports whether a scheme has an opener.
func Registered(scheme string) bool {
	openersMu.RLock()
	defer openersMu.RUnlock()
	_, ok := openers[scheme]
	return ok
}

// DefaultCounterTTL is the lifetime of a counter on a backend whose
// counters expire, opened without an engine (the engine sets each
// backend's from its regions: CounterLifer).
const DefaultCounterTTL = 24 * time.Hour
