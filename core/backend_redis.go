package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisTimeout bounds each Redis operation (dial, read, write) when
// the URL sets no timeout option.
const DefaultRedisTimeout = 250 * time.Millisecond

func init() {
	openers["redis"] = func(u *url.URL) (backend, error) { return openRedis(u, false) }
	openers["rediss"] = func(u *url.URL) (backend, error) { return openRedis(u, false) }
	openers["redis+cluster"] = func(u *url.URL) (backend, error) { return openRedis(u, true) }
	openers["rediss+cluster"] = func(u *url.URL) (backend, error) { return openRedis(u, true) }
}

// redisBackend reads with the native go-redis client, so that a lookup is
// one MGET of the entry and its counters (one round trip), and writes
// entries through gocache's redis store, the project's storage boundary.
// On a cluster the keys of one lookup live in several slots; the lookup is
// then one pipeline, sent to the nodes concerned in parallel.
type redisBackend struct {
	client  redis.UniversalClient
	st      *redisstore.RedisStore
	cluster bool
	timeout time.Duration
	// Connection-level state (redis_conn.go): admission to the pool,
	// pool warm-up and the restart check run when a connection opens.
	adm       *admission
	warmConns int
	guard     restartGuard
	nodeOpt   *redis.Options // cluster: a node's options (restart check's own connections)
}

// op bounds one operation by the URL's timeout, go-redis's retries
// included: without it a pipeline that times out is retried up to
// max_retries (3) times, so a stalled server held a request for about
// five times the timeout.
//
// The operation first waits for one of the pool's connections (admission,
// redis_conn.go) on a budget of its own, so that queueing behind a burst
// does not eat the timeout; an operation that could not get one in time
// fails with an error wrapping errQueued, which the breaker ignores.
func (b *redisBackend) op(ctx context.Context) (context.Context, context.CancelFunc) {
	if b.adm == nil {
		return context.WithTimeout(ctx, b.timeout)
	}
	if err := b.adm.enter(ctx); err != nil {
		ctx, cancel := context.WithCancelCause(ctx)
		cancel(err) // queuedHook reports the cause
		return ctx, func() {}
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	return ctx, func() {
		cancel()
		b.adm.leave()
	}
}

// openRedis parses redis://[user:pass@]host:port/db?timeout=..&pool_size=..
// (rediss:// for TLS) and redis+cluster://h1:7000,h2:7001?... . The
// timeout option sets dial, read and write timeouts (default 250ms) and
// bounds each operation, retries included; the other query options are
// go-redis's own (pool_size, pool_timeout, min_idle_conns, max_retries,
// ...). pool_timeout bounds the wait for a free connection (default:
// timeout + 1 s); New opens min(pool_size, 32) connections per node, or
// min_idle_conns if larger (see warm).
func openRedis(u *url.URL, cluster bool) (*redisBackend, error) {
	raw := u.Redacted()
	q := u.Query()
	timeout := DefaultRedisTimeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("backend %q: timeout: bad duration %q (want e.g. 250ms)", raw, v)
		}
		timeout = d
	}
	q.Del("timeout")
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return nil, fmt.Errorf("backend %q: bad host %q (want host:port)", raw, h)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("backend %q: bad port in %q", raw, h)
		}
	}
	scheme := strings.TrimSuffix(u.Scheme, "+cluster")
	b := &redisBackend{cluster: cluster, timeout: timeout}
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
		opt.OnConnect = b.onConnect(opt.Addr)
		size := poolSize(opt.PoolSize, false)
		b.adm = newAdmission(size, cmp.Or(opt.PoolTimeout, timeout+time.Second), timeout)
		b.warmConns = min(max(opt.MinIdleConns, min(size, maxWarmConns)), size)
		b.client = redis.NewClient(opt)
	}
	b.client.AddHook(connHook{b.adm})
	b.st = redisstore.NewRedis(b.client)
	return b, nil
}

func (b *redisBackend) load(ctx context.Context, key string, names []string, vals []uint64) (*entry, error) {
	ctx, cancel := b.op(ctx)
	defer cancel()
	var res []any
	var err error
	if b.cluster {
		keys := make([]string, 0, 1+len(names))
		keys = append(keys, key)
		keys = append(keys, names...)
		res, err = b.getMany(ctx, keys) // the keys live in several slots
	} else {
		// MGET built here rather than by client.MGet, which copies its
		// keys into a new argument slice.
		args := make([]any, 2+len(names))
		args[0], args[1] = "mget", key
		for i, n := range names {
			args[2+i] = n
		}
		cmd := redis.NewSliceCmd(ctx, args...)
		_ = b.client.Process(ctx, cmd)
		res, err = cmd.Result()
	}
	if err != nil {
		return nil, err
	}
	if len(res) != 1+len(names) {
		return nil, fmt.Errorf("routecache: redis MGET: %d values for %d keys", len(res), 1+len(names))
	}
	for i := range names {
		vals[i] = parseCounter(res[i+1])
	}
	return decodeRedisValue(res[0])
}

// getMany is MGET as one pipeline of GETs, which a cluster client splits by
// node and sends in parallel: nil for a missing key, else the string.
func (b *redisBackend) getMany(ctx context.Context, keys []string) ([]any, error) {
	pipe := b.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]any, len(keys))
	for i, c := range cmds {
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, err
		default:
			out[i] = v
		}
	}
	return out, nil
}

// decodeRedisValue decodes an MGET/GET reply: nil is absent, and the
// client returns strings (as gocache's redis store does), never []byte.
func decodeRedisValue(v any) (*entry, error) {
	if v == nil {
		return nil, nil
	}
	switch t := v.(type) {
	case string:
		return decodeString(t) // immutable: the entry views it
	case []byte:
		return decodeEntry(t)
	}
	return nil, errCorrupt
}

func (b *redisBackend) counters(ctx context.Context, names []string, vals []uint64) error {
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
		vals[i] = parseCounter(res[i])
	}
	return nil
}

// ensure creates missing counters with SET NX of a fresh random value and
// reads back the value now current, all in one pipeline.
func (b *redisBackend) ensure(ctx context.Context, names []string, vals []uint64) error {
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
		pipe.SetNX(ctx, n, strconv.FormatUint(freshCounter(), 10), 0)
		cmds = append(cmds, pipe.Get(ctx, n))
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !isRedisReply(err) {
		return err
	}
	var junk []int
	for j, c := range cmds {
		v, err := c.Result()
		if err != nil && !isRedisReply(err) {
			return err
		}
		if vals[idx[j]] = parseCounter(v); vals[idx[j]] == 0 {
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
			vals[i] = freshCounter()
			pipe.Set(ctx, names[i], strconv.FormatUint(vals[i], 10), 0)
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

// bump is SET NX fresh + INCR in one pipeline: an existing counter moves
// on by one, a missing one starts from a fresh random value (never from
// 1, which a lost-and-recreated counter could then repeat). A value INCR
// refuses (not a number, another type, overflow) is replaced by a fresh
// one, which invalidates just as well.
func (b *redisBackend) bump(ctx context.Context, name string) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	pipe := b.client.Pipeline()
	pipe.SetNX(ctx, name, strconv.FormatUint(freshCounter(), 10), 0)
	pipe.Incr(ctx, name)
	_, err := pipe.Exec(ctx)
	if err != nil && isRedisReply(err) {
		return b.client.Set(ctx, name, strconv.FormatUint(freshCounter(), 10), 0).Err()
	}
	return err
}

func (b *redisBackend) store(ctx context.Context, key string, e *entry, ttl time.Duration) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	return b.st.Set(ctx, key, e.encode(), store.WithExpiration(ttl))
}

func (b *redisBackend) remote() bool { return true }
func (b *redisBackend) close() error { return b.client.Close() }
