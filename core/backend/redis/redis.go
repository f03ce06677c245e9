package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/internal/wire"
	"github.com/routecache/routecache/core/internal/throttle"

	"github.com/eko/gocache/lib/v4/store"
	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds each Redis operation (dial, read, write) when
// the URL sets no timeout option.
const DefaultTimeout = 250 * time.Millisecond

func init() {
	backend.Register("redis", func(u *url.URL, o backend.Options) (backend.Backend, error) { return openRedisWith(u, false, o) })
	backend.Register("rediss", func(u *url.URL, o backend.Options) (backend.Backend, error) { return openRedisWith(u, false, o) })
	backend.Register("redis+cluster", func(u *url.URL, o backend.Options) (backend.Backend, error) { return openRedisWith(u, true, o) })
	backend.Register("rediss+cluster", func(u *url.URL, o backend.Options) (backend.Backend, error) { return openRedisWith(u, true, o) })
}

// openRedisWith opens a Redis backend with the engine's options.
func openRedisWith(u *url.URL, cluster bool, o backend.Options) (*Backend, error) {
	b, err := openRedis(u, cluster)
	if err == nil {
		b.SetLogger(o.Log())
		b.guard.configure(o.Log(), nil)
	}
	return b, err
}

// Prepare registers the region counters the restart check resets
// (redis_conn.go), then warms the pool, bounded by four operation
// timeouts: New never fails, and waits little, because Redis is down.
func (b *Backend) Prepare(regions []backend.RegionCounters) {
	b.guard.setRegions(regions)
	ctx, cancel := context.WithTimeout(context.Background(), 4*b.timeout)
	defer cancel()
	b.warm(ctx)
}

var _ backend.Preparer = (*Backend)(nil)

// Backend reads with the native go-redis client, so that a lookup is
// one pipeline of a bounded GETRANGE of the entry and one of each of its
// counters (one round trip), and writes entries as gocache's redis store
// does (a SET with expiry; through the store itself when the entry records
// no counter), pipelined with the renewal of the entry's counters. On a
// single node the lookup (Load) is written and read on connections of the
// backend's own, speaking RESP2 directly (lean.go), with go-redis as its
// fallback. On a cluster the keys of one lookup live in several slots; the
// lookup is then one go-redis pipeline, sent to the nodes concerned in
// parallel.
type Backend struct {
	client  redis.UniversalClient
	st      *redisstore.RedisStore
	cluster bool
	timeout time.Duration
	// maxEntry is the size of the largest entry stored (larger ones are
	// refused) and the most a lookup reads of a value: see boundEntries.
	maxEntry    int64
	maxEntryArg any       // maxEntry as a command argument: decimal text, boxed once
	loads       sync.Pool // idle *loadOp for Load
	// instance names this backend in the invalidation messages it
	// publishes (a near cache in front of it shares it, to tell its own
	// messages from other instances').
	instance string
	// counterTTL is how long a counter lives after it was created, bumped
	// or last renewed by the store of an entry depending on it (see
	// setCounterTTL).
	counterTTL atomic.Int64 // a time.Duration; SetCounterTTL may raise it at any time
	// logReg is this backend's registration with redisLogs (go-redis's
	// own log lines), removed by close.
	logReg *redisLogTarget
	// Connection-level state (redis_conn.go): admission to the pool,
	// pool warm-up and the restart check run when a connection opens.
	adm       *admission
	warmConns int
	guard     restartGuard
	nodeOpt   *redis.Options // cluster: a node's options (restart check's own connections)
	// lean is the single node's lean read path (lean.go); nil when every
	// read goes through go-redis (a cluster, TLS, RESP3...: see leanFor).
	lean *leanPool
}

// InvalidationChannel is the pub/sub channel every invalidation on a Redis
// backend is published on (payload "<instance>/<kind>/<region>/<name>|<counter>",
// or "<instance>|<counter>" for a bump that carries no event: message.go),
// whether or not the Cache making it has a near cache: near caches
// subscribe to it.
const InvalidationChannel = "routecache:inv"

// op bounds one operation by the URL's timeout, go-redis's retries
// included: without it a pipeline that times out is retried up to
// max_retries (3) times, so a stalled server held a request for about
// five times the timeout.
//
// The operation first waits for one of the pool's connections (admission,
// redis_conn.go) on a budget of its own, so that queueing behind a burst
// does not eat the timeout; an operation that could not get one in time
// fails with an error wrapping backend.ErrQueued, which the breaker ignores.
func (b *Backend) op(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel, admitted := b.begin(ctx)
	if !admitted {
		return ctx, cancel
	}
	return ctx, func() { b.end(cancel, true) }
}

// begin is op without the closure it returns (an allocation on the hit's
// path): the caller defers end(cancel, admitted).
func (b *Backend) begin(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	if b.adm == nil {
		ctx, cancel := context.WithTimeout(ctx, b.timeout)
		return ctx, cancel, false
	}
	if err := b.adm.enter(ctx); err != nil {
		ctx, cancel := context.WithCancelCause(ctx)
		cancel(err) // queuedHook reports the cause
		return ctx, func() {}, false
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	return ctx, cancel, true
}

// end ends an operation begin started.
func (b *Backend) end(cancel context.CancelFunc, admitted bool) {
	cancel()
	if admitted {
		b.adm.leave()
	}
}

// defaultProtocol is the RESP version a connection speaks when the URL
// sets no protocol option: 2. go-redis's default, RESP3, adds push
// notifications, which this backend does not use (its pub/sub has a
// connection of its own either way) and which go-redis looks for around
// every command and every connection taken from the pool; the replies of
// the commands the backend sends read the same under both.
const defaultProtocol = 2

// openRedis parses redis://[user:pass@]host:port/db?timeout=..&pool_size=..
// (rediss:// for TLS) and redis+cluster://h1:7000,h2:7001?... . The
// timeout option sets dial, read and write timeouts (default 250ms) and
// bounds each operation, retries included; the other query options are
// go-redis's own (pool_size, pool_timeout, min_idle_conns, max_retries,
// ...; protocol defaults to 2, see defaultProtocol). pool_timeout bounds
// the wait for a free connection (default: timeout + 1 s); New opens
// min(pool_size, 32) connections per node, or min_idle_conns if larger
// (see warm).
func openRedis(u *url.URL, cluster bool) (*Backend, error) {
	raw := backend.DisplayURL(u)
	q := u.Query()
	timeout := DefaultTimeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("backend %q: timeout: bad duration %q (want e.g. 250ms)", raw, v)
		}
		timeout = d
	}
	q.Del("timeout")
	// RESP2 unless the URL asks for another protocol: the backend uses
	// nothing RESP3 adds, and go-redis's RESP3 push-notification checks
	// run around every command (see defaultProtocol).
	protocol := q.Get("protocol") == ""
	hosts, err := backend.Hosts(u)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", raw, err)
	}
	scheme := strings.TrimSuffix(u.Scheme, "+cluster")
	b := &Backend{cluster: cluster, timeout: timeout, instance: fmt.Sprintf("%x", backend.FreshCounter())}
	b.SetCounterTTL(backend.DefaultCounterTTL)
	b.BoundEntries(0)
	if cluster {
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("backend %q: a cluster has no database number", raw)
		}
		nu := url.URL{Scheme: scheme, User: u.User, Host: hosts[0], RawQuery: q.Encode()}
		opt, err := redis.ParseClusterURL(nu.String())
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", raw, err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
		if protocol {
			opt.Protocol = defaultProtocol
		}
		nodeOpt := opt.NewClient
		if nodeOpt == nil {
			nodeOpt = redis.NewClient
		}
		var once sync.Once
		opt.NewClient = func(o *redis.Options) *redis.Client {
			once.Do(func() { c := *o; b.nodeOpt = &c })
			o.OnConnect = b.onConnect(o.Addr) // per node: run_ids are per node
			return nodeOpt(o)
		}
		size := poolSize(opt.PoolSize, true)
		b.adm = newAdmission(size, cmp.Or(opt.PoolTimeout, timeout+time.Second), timeout)
		b.warmConns = min(max(opt.MinIdleConns, min(size, maxWarmConns)), size)
		b.client = redis.NewClusterClient(opt)
	} else {
		if len(hosts) != 1 {
			return nil, fmt.Errorf("backend %q: one host expected (use redis+cluster:// for several)", raw)
		}
		nu := url.URL{Scheme: scheme, User: u.User, Host: u.Host, Path: u.Path, RawQuery: q.Encode()}
		opt, err := redis.ParseURL(nu.String())
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", raw, err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
		if protocol {
			opt.Protocol = defaultProtocol
		}
		opt.OnConnect = b.onConnect(opt.Addr)
		size := poolSize(opt.PoolSize, false)
		b.adm = newAdmission(size, cmp.Or(opt.PoolTimeout, timeout+time.Second), timeout)
		b.warmConns = min(max(opt.MinIdleConns, min(size, maxWarmConns)), size)
		b.client = redis.NewClient(opt)
		b.lean = leanFor(opt, &b.guard, size)
	}
	b.client.AddHook(connHook{b.adm})
	b.st = redisstore.NewRedis(b.client)
	return b, nil
}

// Load reads the entry with GETRANGE key 0 maxEntry rather than GET: a
// value longer than any entry this backend stores (one planted under an
// entry key, say 64 MiB) costs at most maxEntry+1 bytes to read and is
// that key's corrupt entry, instead of a read that times out and counts
// as a backend error (opening the breaker for every key). A value of
// another type (WRONGTYPE) is that key's corrupt entry too. Either way the
// region serves a miss and its fill overwrites the value with an entry.
//
// The read is one round trip: one pipeline of the entry's GETRANGE and a
// bounded GETRANGE per counter (smallRead), which a cluster client splits
// by node and sends in parallel. A single node sends it on the lean path
// (leanLoad, lean.go), which reads the replies by the same rules
// (readReplies), and falls back to the go-redis pipeline below when that
// path cannot serve the Load (a server the restart check has not verified
// yet, a connection the server closed, TLS, RESP3: see lean.go). No read is unbounded: a huge value planted
// under a counter costs a few dozen bytes, as one under an entry key costs
// maxEntry. (A script doing it all on the server was measured slower: more
// client instructions, and the server's script call cost about 10µs per
// hit.)
func (b *Backend) Load(ctx context.Context, key string, names []string, vals []uint64) (*backend.Entry, error) {
	if b.lean != nil {
		if e, err, ok := b.leanLoad(ctx, key, names, vals); ok {
			return e, err
		}
	}
	ctx, cancel, admitted := b.begin(ctx)
	defer b.end(cancel, admitted)
	op := b.loadOp(len(names) + 1)
	defer b.loads.Put(op)
	pipe := op.pipe
	if b.cluster {
		pipe = b.client.Pipeline().(*redis.Pipeline) // not reused: see loadOp
	}
	ec := op.reads[0].set(key, b.maxEntryArg)
	for i, n := range names {
		op.reads[i+1].set(n, smallReadEnd)
	}
	_ = pipe.BatchProcess(ctx, op.cmds[:len(names)+1]...)
	if err := execErr(pipe.Exec(ctx)); err != nil {
		return nil, err
	}
	for i := range names {
		v, err := smallResult(op.reads[i+1].cmd)
		if err != nil {
			return nil, err
		}
		vals[i] = backend.ParseDecimal(v)
	}
	return b.entryResult(ec)
}

// loadOp holds what Load sends, reused from one lookup to the next: a new
// pipeline, its commands and their argument lists cost three allocations
// per key read and four to grow the pipeline's queue on every hit. The
// commands are go-redis's own (so hooks, retries and the cluster's routing
// see nothing new), set afresh before each use; a StringCmd keeps no state
// past its result, which Load reads before the loadOp goes back to the
// pool. (The pipeline of a single-node client is reused too; a cluster's
// is not, as before.) A single node's Loads use it only when the lean path
// falls back to go-redis.
type loadOp struct {
	pipe  *redis.Pipeline
	reads []*boundedRead // the entry's, then one per counter
	cmds  []redis.Cmder  // reads[i].cmd, as the pipeline takes them
}

// boundedRead is one reusable GETRANGE key start end.
//
// On a single node the key argument is a pointer to key (go-redis writes
// a *string as the string), so that setting it allocates nothing; a
// cluster client reads the key argument to route the command, as a
// string only, so there it is the string itself.
type boundedRead struct {
	args  [4]any
	key   string
	byRef bool // args[1] is &key
	cmd   *redis.StringCmd
}

// set readies the read of key's first end+1 bytes and returns its command.
func (r *boundedRead) set(key string, end any) *redis.StringCmd {
	if r.byRef {
		r.key = key
	} else {
		r.args[1] = key
	}
	r.args[3] = end
	r.cmd.SetErr(nil)
	r.cmd.SetVal("")
	return r.cmd
}

// loadOp returns an idle loadOp with at least n reads.
func (b *Backend) loadOp(n int) *loadOp {
	op, _ := b.loads.Get().(*loadOp)
	if op == nil {
		op = &loadOp{pipe: b.client.Pipeline().(*redis.Pipeline)}
	}
	for len(op.reads) < n {
		r := &boundedRead{args: [4]any{"getrange", "", rangeStart, smallReadEnd}, byRef: !b.cluster}
		if r.byRef {
			r.args[1] = &r.key
		}
		// The command's context is not used by a StringCmd (the pipeline
		// runs under Exec's); Background keeps no request alive in the pool.
		r.cmd = redis.NewStringCmd(context.Background(), r.args[:]...)
		op.reads = append(op.reads, r)
		op.cmds = append(op.cmds, r.cmd)
	}
	return op
}

// execErr is a pipeline's failure as a whole (the connection, a timeout,
// the pool): nil when the server answered, even if some command's answer
// is an error reply (WRONGTYPE, nil), which each command's own result
// tells. A pipeline a hook refused never reaches its commands, so their
// results must not be read as answers. Nor does an error reply that no
// command carries answer them: the server refused the connection before
// any command ran (WRONGPASS or NOAUTH from AUTH, LOADING, a full client
// table), and the commands hold no results, which would read as absent.
func execErr(cmds []redis.Cmder, err error) error {
	if err == nil || errors.Is(err, redis.Nil) || isRedisReply(err) && anyAnswered(cmds) {
		return nil
	}
	return err
}

// anyAnswered reports whether some command of a pipeline holds an error
// reply: go-redis's Exec then returned the first of them.
func anyAnswered(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() != nil {
			return true
		}
	}
	return false
}

// smallReadMax bounds what one read of a counter, a soft mark, a lease
// token or a restart marker transfers: ours are a few dozen bytes at most,
// so a longer value is foreign, and reads as junk.
const smallReadMax = 64

// smallReadEnd is GETRANGE's inclusive end for smallReadMax+1 bytes (one
// more than allowed, to tell a value at the bound from a longer one),
// boxed once, as text (go-redis writes a string argument as is; an integer
// it formats on every command). rangeStart is GETRANGE's start, likewise.
var (
	smallReadEnd any = strconv.Itoa(smallReadMax)
	rangeStart   any = "0"
)

// smallRead queues a bounded read of a counter-sized value on pipe.
func smallRead(ctx context.Context, pipe redis.Pipeliner, key string) *redis.StringCmd {
	c := redis.NewStringCmd(ctx, "getrange", key, rangeStart, smallReadEnd)
	_ = pipe.Process(ctx, c)
	return c
}

// smallResult is a smallRead's value: "" for a missing key (GETRANGE's
// answer), a key of another type, or a value longer than smallReadMax
// (foreign: counters treat "" as missing and repair it).
func smallResult(c *redis.StringCmd) (string, error) {
	v, err := c.Result()
	switch {
	case err != nil && (errors.Is(err, redis.Nil) || isWrongType(err)):
		return "", nil
	case err != nil:
		return "", err
	case len(v) > smallReadMax:
		return "", nil
	}
	return v, nil
}

// entryResult decodes the GETRANGE of an entry: "" is absent (GETRANGE's
// answer for a missing key; an empty value is no entry either), a value
// longer than maxEntry or of another type is no entry of ours.
func (b *Backend) entryResult(ec *redis.StringCmd) (*backend.Entry, error) {
	v, err := ec.Result()
	switch {
	case err != nil:
		if isWrongType(err) {
			return nil, backend.ErrCorrupt
		}
		return nil, err
	case v == "":
		return nil, nil
	case int64(len(v)) > b.maxEntry:
		return nil, backend.ErrCorrupt // longer than any entry: not even decoded
	}
	return backend.DecodeString(v) // immutable: the entry views it
}

// getMany reads counter-sized values (counters, soft marks) as one
// pipeline of bounded reads (smallRead), which a cluster client splits by
// node and sends in parallel: nil for a missing key, a key of another type
// or a value too long to be ours, else the string.
func (b *Backend) getMany(ctx context.Context, keys []string) ([]any, error) {
	pipe := b.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = smallRead(ctx, pipe, k)
	}
	if err := execErr(pipe.Exec(ctx)); err != nil {
		return nil, err
	}
	out := make([]any, len(keys))
	for i, c := range cmds {
		v, err := smallResult(c)
		if err != nil {
			return nil, err
		}
		if v != "" {
			out[i] = v
		}
	}
	return out, nil
}

// isWrongType reports Redis's WRONGTYPE reply: the key holds another type.
func isWrongType(err error) bool {
	return redis.HasErrorPrefix(err, "WRONGTYPE")
}

// Counters reads the named counters (0 = missing).
func (b *Backend) Counters(ctx context.Context, names []string, vals []uint64) error {
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := b.op(ctx)
	defer cancel()
	res, err := b.getMany(ctx, names)
	if err != nil {
		return err
	}
	for i := range names {
		vals[i] = backend.ParseCounter(res[i])
	}
	return nil
}

// Ensure creates missing counters with SET NX PX of a fresh random value
// (living counterTTL) and reads back the value now current, all in one
// pipeline.
func (b *Backend) Ensure(ctx context.Context, names []string, vals []uint64) error {
	if !slices.Contains(vals, 0) {
		return nil
	}
	ctx, cancel := b.op(ctx)
	defer cancel()
	pipe := b.client.Pipeline()
	var idx []int
	var cmds []*redis.StringCmd
	for i, n := range names {
		if vals[i] != 0 {
			continue
		}
		pipe.SetNX(ctx, n, strconv.FormatUint(backend.FreshCounter(), 10), b.counterLife())
		cmds = append(cmds, smallRead(ctx, pipe, n))
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return nil
	}
	if err := execErr(pipe.Exec(ctx)); err != nil {
		return err
	}
	var junk []int
	for j, c := range cmds {
		v, err := c.Result()
		if err != nil && !isRedisReply(err) {
			return err
		}
		if vals[idx[j]] = backend.ParseCounter(v); vals[idx[j]] == 0 {
			junk = append(junk, idx[j])
		}
	}
	// Something that is not a counter (a foreign value, another type) sits
	// under a counter's name: overwrite it with a fresh value, as memcached's
	// create does. Overwriting is an invalidation, so a race with another
	// instance doing the same costs at most a miss.
	if len(junk) > 0 {
		pipe := b.client.Pipeline()
		for _, i := range junk {
			vals[i] = backend.FreshCounter()
			pipe.Set(ctx, names[i], strconv.FormatUint(vals[i], 10), b.counterLife())
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// isRedisReply reports an error reply from the server (WRONGTYPE, "not
// an integer"...), as opposed to a network or timeout failure.
func isRedisReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// bumpScript moves a counter on and tells the near caches, atomically and
// in one round trip (EVALSHA; a cluster runs it on the node of the
// counter's slot, and PUBLISH reaches the subscribers of every node).
// A missing counter starts from a fresh random value (never from 1, which
// a lost-and-recreated counter could then repeat); a value INCR refuses
// (not a number, another type, overflow) is replaced by a fresh one, which
// invalidates just as well. The counter then lives ARGV[2] ms more. The
// message goes out after the increment, so a near cache that drops its
// copy on receipt reads the new value. The reply is the value now held,
// as a string (Lua numbers are doubles: a 63-bit value would lose bits).
//
//	KEYS[1] counter; ARGV[1] fresh value; ARGV[2] lifetime in ms;
//	ARGV[3] channel ("" publishes nothing); ARGV[4] message
var bumpScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local r = redis.pcall('INCR', KEYS[1])
if type(r) == 'table' and r.err then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return redis.call('GET', KEYS[1])`)

// markScript writes a soft mark (living ARGV[2] ms) and then publishes the
// soft bump it records: a near cache told of the bump finds the mark.
//
//	KEYS[1] mark key; ARGV[1] mark; ARGV[2] lifetime in ms; ARGV[3]
//	channel; ARGV[4] message
var markScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`)

// Bump increments a counter (see bumpScript) and publishes the
// invalidation for the near caches of every instance, with or without a
// near cache in this one.
func (b *Backend) Bump(ctx context.Context, name string) error {
	_, err := b.incr(ctx, name, b.message(name))
	return err
}

// BumpEvent bumps ev.Counter, softly when ev.Soft is set, and publishes
// the invalidation with what it was (message.go), in the same round trip
// (backend.EventBumper).
func (b *Backend) BumpEvent(ctx context.Context, ev backend.Event) error {
	if ev.Soft {
		return b.softBump(ctx, ev.Counter, b.eventMessage(ev))
	}
	_, err := b.incr(ctx, ev.Counter, b.eventMessage(ev))
	return err
}

// incr runs bumpScript, publishing msg unless it is empty, and returns
// the counter's new value.
func (b *Backend) incr(ctx context.Context, name, msg string) (uint64, error) {
	ctx, cancel := b.op(ctx)
	defer cancel()
	channel := ""
	if msg != "" {
		channel = InvalidationChannel
	}
	v, err := bumpScript.Run(ctx, b.client, []string{name},
		strconv.FormatUint(backend.FreshCounter(), 10), ttlMillis(b.counterLife()), channel, msg).Text()
	if err != nil {
		return 0, err
	}
	return backend.ParseDecimal(v), nil
}

// ttlMillis is a lifetime in whole milliseconds (at least 1), as PX takes it.
func ttlMillis(d time.Duration) string {
	return strconv.FormatInt(max(int64(d/time.Millisecond), 1), 10)
}

// SetCounterTTL sets how long counters live (counterLifer).
func (b *Backend) SetCounterTTL(d time.Duration) { b.counterTTL.Store(int64(d)) }

// counterLife is how long counters live now.
func (b *Backend) counterLife() time.Duration { return time.Duration(b.counterTTL.Load()) }

// Store writes the entry and, in the same pipeline, renews the lifetime of
// every counter it depends on: a counter outlives every entry that
// recorded it (see counterLifetime). PEXPIRE of a counter that has gone
// meanwhile does nothing; the entry then reads as a miss.
func (b *Backend) Store(ctx context.Context, key string, e *backend.Entry, ttl time.Duration) error {
	v := e.Encode()
	if int64(len(v)) > b.maxEntry {
		return backend.ErrTooLarge // a lookup would read it as corrupt
	}
	ctx, cancel := b.op(ctx)
	defer cancel()
	if len(e.Counters) == 0 {
		return b.st.Set(ctx, key, v, store.WithExpiration(ttl))
	}
	pipe := b.client.Pipeline()
	set := pipe.Set(ctx, key, v, ttl) // what the gocache store sends
	for _, c := range e.Counters {
		pipe.PExpire(ctx, c.Name, b.counterLife())
	}
	_, _ = pipe.Exec(ctx)
	return set.Err()
}

// BoundEntries raises the largest entry stored and read (backend.EntryBounder).
func (b *Backend) BoundEntries(maxBody int64) {
	b.maxEntry = max(b.maxEntry, backend.MaxEntrySize(maxBody))
	b.maxEntryArg = strconv.FormatInt(b.maxEntry, 10) // text: go-redis writes it as is
}

// Remote is true: the store is shared between instances.
func (b *Backend) Remote() bool { return true }

// Close releases the backend's resources.
func (b *Backend) Close() error {
	redisLogs.unregister(b.logReg)
	if b.lean != nil {
		b.lean.close()
	}
	return b.client.Close()
}

// go-redis logs some events itself (a dial that failed, a pub/sub
// connection dropped, a pool connection with unread data...) through a
// package-level logger, by default straight to stderr: a Redis outage
// printed dozens of lines there, past the Cache's logger and its rate
// limit. redis.SetLogger is process-wide and go-redis reads it without
// synchronisation, so routecache installs its adapter once, when the
// package is initialised (before any client can exist), rather than per
// Cache.
//
// The adapter forwards each line, at Warn level as "routecache: redis
// client", to the Config.Logger of the most recently opened Redis backend
// still open (the line does not say which client it is about), or to
// slog.Default() when none is open. Like routecache's own backend errors,
// at most one line a second goes out; the next one carries the number
// suppressed meanwhile. A program that wants go-redis's lines elsewhere
// calls redis.SetLogger itself after importing routecache.
func init() { redis.SetLogger(redisLogs) }

var redisLogs = &redisLogger{}

// redisLogger is the go-redis logger (internal.Logging) routecache installs.
type redisLogger struct {
	mu         sync.Mutex
	targets    []*redisLogTarget // open backends' loggers, oldest first
	gate       throttle.Gate
	suppressed atomic.Uint64
}

// redisLogTarget is one open backend's registration.
type redisLogTarget struct{ log *slog.Logger }

func (l *redisLogger) register(log *slog.Logger) *redisLogTarget {
	t := &redisLogTarget{log: log}
	l.mu.Lock()
	l.targets = append(l.targets, t)
	l.mu.Unlock()
	return t
}

func (l *redisLogger) unregister(t *redisLogTarget) {
	if t == nil {
		return
	}
	l.mu.Lock()
	l.targets = slices.DeleteFunc(l.targets, func(x *redisLogTarget) bool { return x == t })
	l.mu.Unlock()
}

func (l *redisLogger) current() *slog.Logger {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.targets); n > 0 {
		return l.targets[n-1].log
	}
	return slog.Default()
}

// Printf implements go-redis's internal.Logging.
func (l *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if !l.gate.Every(time.Second) {
		l.suppressed.Add(1)
		return
	}
	args := []any{"detail", strings.TrimSpace(fmt.Sprintf(format, v...))}
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	l.current().WarnContext(context.WithoutCancel(ctx), "routecache: redis client", args...)
}

// SetLogger routes go-redis's log lines to the Cache's logger while this
// backend is open (see redisLogger).
func (b *Backend) SetLogger(log *slog.Logger) {
	if b.logReg == nil && log != nil {
		b.logReg = redisLogs.register(log)
	}
}

// SoftBump moves the counter on and records its mark.
//
// Redis: the counter moves on (bumpScript, nothing published yet), then
// the mark is written and the bump published in one script (markScript):
// a near cache told of the bump finds its mark. The mark lives as long as
// a counter. (The mark's key lives in another cluster slot than the
// counter's, hence two scripts.)
func (b *Backend) SoftBump(ctx context.Context, name string) error {
	return b.softBump(ctx, name, b.message(name))
}

// softBump is SoftBump publishing msg.
func (b *Backend) softBump(ctx context.Context, name, msg string) error {
	n, err := b.incr(ctx, name, "")
	if err != nil {
		return err
	}
	ctx, cancel := b.op(ctx)
	defer cancel()
	err = markScript.Run(ctx, b.client, []string{wire.SoftKey(name)},
		wire.EncodeMark(backend.SoftMark{Old: n - 1, New: n}), ttlMillis(b.counterLife()), InvalidationChannel, msg).Err()
	if err != nil {
		return fmt.Errorf("publish invalidation: %w", err)
	}
	return nil
}

// SoftMarks reads the soft marks of the named counters.
func (b *Backend) SoftMarks(ctx context.Context, names []string, marks []backend.SoftMark) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = wire.SoftKey(n)
	}
	res, err := b.getMany(ctx, keys)
	if err != nil {
		return err
	}
	for i, v := range res {
		marks[i] = backend.SoftMark{}
		if s, ok := v.(string); ok {
			marks[i] = wire.DecodeMark([]byte(s))
		}
	}
	return nil
}

// releaseScript deletes the lease only if it still holds our token, so a
// holder whose lease expired cannot free someone else's.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Acquire takes the lease on key for ttl, if no one holds it.
func (b *Backend) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	ctx, cancel := b.op(ctx) // bounded like every Redis call, retries included
	defer cancel()
	token := strconv.FormatUint(backend.FreshCounter(), 36)
	ok, err := b.client.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return "", false, err
	}
	return token, ok, nil
}

// Release gives the lease back if token still holds it.
func (b *Backend) Release(ctx context.Context, key, token string) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	return releaseScript.Run(ctx, b.client, []string{key}, token).Err()
}

// Poll is load (the entry's bounded GETRANGE, its counters) with a bounded
// read of the lease key, in one pipeline. It is on the miss path only. A
// foreign value too long to be a token reads as no lease.
func (b *Backend) Poll(ctx context.Context, key, lkey string, names []string, vals []uint64) (*backend.Entry, bool, error) {
	ctx, cancel := b.op(ctx)
	defer cancel()
	pipe := b.client.Pipeline()
	ec := redis.NewStringCmd(ctx, "getrange", key, rangeStart, b.maxEntryArg)
	_ = pipe.Process(ctx, ec)
	cmds := make([]*redis.StringCmd, len(names)+1)
	for i, n := range names {
		cmds[i] = smallRead(ctx, pipe, n)
	}
	cmds[len(names)] = smallRead(ctx, pipe, lkey)
	if err := execErr(pipe.Exec(ctx)); err != nil {
		return nil, false, err
	}
	for i := range names {
		v, err := smallResult(cmds[i])
		if err != nil {
			return nil, false, err
		}
		vals[i] = backend.ParseDecimal(v)
	}
	// Any value under the lease key holds it, a foreign one too (SET NX
	// could not take it either): only its absence releases the wait.
	token, err := cmds[len(names)].Result()
	held := err == nil && token != "" || isWrongType(err)
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, false, err
	}
	e, err := b.entryResult(ec)
	return e, held, err
}

// Client is the go-redis client (a near cache subscribes with it; tests
// inspect the server with it).
func (b *Backend) Client() redis.UniversalClient { return b.client }

// Instance names this backend in the invalidation messages it publishes
// (the head of every message on InvalidationChannel: message.go).
func (b *Backend) Instance() string { return b.instance }

// OnReset sets the logger of the restart check and adds f to what runs
// after it reset counters or saw a node's run_id change (a near cache
// drops its local counters).
func (b *Backend) OnReset(log *slog.Logger, f func()) { b.guard.configure(log, f) }
