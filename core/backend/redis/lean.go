package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/redis/go-redis/v9"
)

// The lean read path: a single-node backend serves Load (a hit's one
// pipeline) on a small pool of its own raw connections, writing the
// GETRANGEs as RESP2 into a reused buffer in one write and reading the
// replies straight from a bufio.Reader. go-redis's command objects,
// hooks, pipeline machinery and per-command allocations cost about as
// much as the rest of a hit; this path keeps what they give:
//
//   - The operation is bounded by the URL's timeout (the connection's
//     deadline), after admission (conn.go) as every operation; a timeout
//     while the server answered other commands meanwhile gets one more
//     attempt on a fresh budget (connHook.retryable's rule). Successes and
//     network failures are recorded for admission as connHook records them.
//   - Errors are classified as on the go-redis path: a failure of the
//     network or a timeout is returned as the net error; an error reply
//     is a redis.Error (replyError); a queued operation wraps
//     backend.ErrQueued.
//   - A connection is used only for a server incarnation the restart check
//     (conn.go) has vouched for: a new connection reads INFO server's
//     run_id and is kept only if the check verified the node under that
//     run_id (or has no region counters to verify, as go-redis's own
//     connections); otherwise it is closed and that Load is served by
//     go-redis, whose new connection runs the check. A connection made
//     before the check's state changed (another run_id seen, regions
//     registered) is closed instead of reused.
//   - A connection is reused only after every reply of its pipeline was
//     read in full and nothing else is buffered: one cut off by a timeout,
//     an error or a malformed reply is closed, so no caller ever reads
//     another caller's answer.
//   - Any other failure of a connection (the server closed it: restarted,
//     killed, its idle timeout; a dial refused; AUTH refused) closes it and
//     the idle ones, and that Load is served by go-redis, whose pool checks
//     and retries connections as before: the answer and the breaker's view
//     are the go-redis path's.
//
// The lean path is used for redis:// URLs speaking RESP2 (the default)
// without max_active_conns; rediss:// (TLS), protocol=3, max_active_conns
// and the cluster client keep every read on go-redis (leanFor).

// leanPool is the lean path's idle connections to the one node.
type leanPool struct {
	addr     string
	hello    []byte // AUTH, SELECT, CLIENT SETNAME as one pipeline; INFO follows
	helloN   int    // commands in hello
	maxIdle  int
	idleTime time.Duration // conn_max_idle_time (go-redis's default 30 min); <= 0: none
	lifetime time.Duration // conn_max_lifetime; <= 0: none
	dialer   net.Dialer
	guard    *restartGuard
	loads    atomic.Uint64 // Loads answered on this path (LeanLoads)
	mu       sync.Mutex
	idle     []*leanConn
	closed   bool
	dialHook func(net.Conn) net.Conn // tests: wraps each connection dialled
}

// leanConn is one raw connection.
type leanConn struct {
	nc      net.Conn
	rd      *bufio.Reader
	wb      []byte
	gen     uint64 // the restart guard's generation it was vouched under
	created int64  // unix nanos
	used    int64  // unix nanos it was last put back
}

// leanFor returns the lean pool for a single-node backend of these
// options, or nil when a read must go through go-redis (see the list
// above).
func leanFor(opt *redis.Options, g *restartGuard, size int) *leanPool {
	if opt.TLSConfig != nil || opt.Protocol != 2 || opt.MaxActiveConns > 0 ||
		opt.Dialer != nil || opt.CredentialsProvider != nil || opt.CredentialsProviderContext != nil ||
		opt.StreamingCredentialsProvider != nil || opt.Network != "tcp" {
		return nil
	}
	p := &leanPool{addr: opt.Addr, guard: g, maxIdle: size, idleTime: opt.ConnMaxIdleTime, lifetime: opt.ConnMaxLifetime,
		dialer: net.Dialer{KeepAlive: 5 * time.Minute}}
	if opt.MaxIdleConns > 0 {
		p.maxIdle = min(size, opt.MaxIdleConns)
	}
	if p.idleTime == 0 {
		p.idleTime = 30 * time.Minute // go-redis's default
	}
	if opt.Password != "" {
		if opt.Username != "" {
			p.hello = appendCommand(p.hello, "AUTH", opt.Username, opt.Password)
		} else {
			p.hello = appendCommand(p.hello, "AUTH", opt.Password)
		}
		p.helloN++
	}
	if opt.DB != 0 {
		p.hello = appendCommand(p.hello, "SELECT", strconv.Itoa(opt.DB))
		p.helloN++
	}
	if opt.ClientName != "" {
		p.hello = appendCommand(p.hello, "CLIENT", "SETNAME", opt.ClientName)
		p.helloN++
	}
	return p
}

// leanOutcome is how an attempt on the lean path ended.
type leanOutcome int

const (
	leanAnswered leanOutcome = iota // the server answered every command
	leanFailed                      // a timeout or a broken reply: err stands
	leanFallback                    // serve this Load by go-redis
)

// leanLoad is Load on the lean path; ok is false when go-redis must serve
// it (nothing was counted for admission then).
func (b *Backend) leanLoad(ctx context.Context, key string, names []string, vals []uint64) (e *backend.Entry, err error, ok bool) {
	if err := b.adm.enter(ctx); err != nil {
		return nil, err, true // queued (wraps ErrQueued), or the caller left
	}
	defer b.adm.leave()
	if err := ctx.Err(); err != nil {
		return nil, err, true
	}
	start := time.Now()
	deadline := start.Add(b.timeout)
	if dl, has := ctx.Deadline(); has && dl.Before(deadline) {
		deadline = dl
	}
	p := b.lean
	for retried := false; ; retried = true {
		c, out, err := p.get(ctx, start, deadline)
		var v []byte
		var corrupt bool
		if out == leanAnswered {
			v, corrupt, out, err = p.load(c, start, deadline, key, names, vals, b.maxEntry, b.maxEntryArg.(string))
		}
		switch out {
		case leanAnswered:
			b.adm.alive()
			p.loads.Add(1)
			if err != nil {
				return nil, err, true // an error reply
			}
			if corrupt {
				return nil, backend.ErrCorrupt, true
			}
			if len(v) == 0 {
				return nil, nil, true
			}
			e, err := backend.DecodeShared(v) // v is this entry's own: the entry views it
			return e, err, true
		case leanFallback:
			return nil, nil, false
		}
		b.adm.failure.Store(time.Now().UnixNano())
		// One more attempt on a fresh budget if the server answered other
		// commands meanwhile (connHook.retryable).
		if retried || !isTimeout(err) || b.adm.progress.Load() <= start.UnixNano() {
			return nil, fmt.Errorf("routecache: redis: %w", err), true
		}
		deadline = time.Now().Add(b.timeout)
		ctx = context.WithoutCancel(ctx)
	}
}

// get takes an idle connection still usable, or dials one: leanAnswered
// with the connection; leanFailed with the error when the dial or the
// set-up timed out; leanFallback when the pool is closed, the dial failed
// otherwise, or the restart check has not vouched for the server.
func (p *leanPool) get(ctx context.Context, start, deadline time.Time) (*leanConn, leanOutcome, error) {
	now := start.UnixNano()
	gen := p.guard.gen.Load()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, leanFallback, nil
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if c.gen == gen && (p.idleTime <= 0 || now-c.used < int64(p.idleTime)) &&
			(p.lifetime <= 0 || now-c.created < int64(p.lifetime)) {
			p.mu.Unlock()
			return c, leanAnswered, nil
		}
		_ = c.nc.Close()
	}
	p.mu.Unlock()
	if !p.guard.noInfo.Load() && !p.guard.seen(p.addr) {
		return nil, leanFallback, nil // go-redis's first connection checks the server
	}
	c, err := p.dial(ctx, deadline)
	switch {
	case err == nil:
		return c, leanAnswered, nil
	case isTimeout(err):
		return nil, leanFailed, err
	}
	return nil, leanFallback, nil
}

// errUnvouched: the server's run_id is not one the restart check verified.
var errUnvouched = errors.New("routecache: redis: server not yet checked for a restart")

// dial opens a connection, authenticates, selects the database and reads
// the server's run_id, in one round trip, and keeps it only if the restart
// check vouches for that run_id.
func (p *leanPool) dial(ctx context.Context, deadline time.Time) (*leanConn, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := p.dialer.DialContext(dctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if p.dialHook != nil {
		nc = p.dialHook(nc)
	}
	c := &leanConn{nc: nc, rd: bufio.NewReaderSize(nc, 32<<10), created: time.Now().UnixNano()}
	if err := c.hello(p, deadline); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

// hello runs the connection's set-up and the run_id check.
func (c *leanConn) hello(p *leanPool, deadline time.Time) error {
	noInfo := p.guard.noInfo.Load()
	c.wb = append(c.wb[:0], p.hello...)
	if !noInfo {
		c.wb = appendCommand(c.wb, "INFO", "server")
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.nc.Write(c.wb); err != nil {
		return err
	}
	var first error
	for range p.helloN {
		rerr, err := readStatus(c.rd)
		if err != nil {
			return err
		}
		if first == nil {
			first = rerr
		}
	}
	if noInfo {
		c.gen = p.guard.gen.Load()
		return first
	}
	runID, rerr, err := readInfoRunID(c.rd)
	if err != nil {
		return err
	}
	if first != nil {
		return first
	}
	if rerr != nil || runID == "" {
		return errUnvouched // go-redis's check will see the refusal, and log it
	}
	gen, ok := p.guard.vouches(p.addr, runID, deadline)
	if !ok {
		return errUnvouched
	}
	c.gen = gen
	return nil
}

// load sends the pipeline on c and reads its replies; c goes back to the
// pool only if every reply was read whole.
func (p *leanPool) load(c *leanConn, start, deadline time.Time, key string, names []string, vals []uint64, max int64, maxArg string) (v []byte, corrupt bool, out leanOutcome, err error) {
	wb := appendGetRange(c.wb[:0], key, maxArg)
	for _, n := range names {
		wb = appendGetRange(wb, n, smallEnd)
	}
	c.wb = wb
	if err := c.nc.SetDeadline(deadline); err != nil {
		return p.broken(c, err)
	}
	if _, err := c.nc.Write(wb); err != nil {
		return p.broken(c, err)
	}
	v, corrupt, rerr, err := readReplies(c.rd, max, vals)
	if err != nil {
		return p.broken(c, err)
	}
	if c.rd.Buffered() != 0 {
		return p.broken(c, errProtocol) // more than asked for: never reused
	}
	c.used = start.UnixNano()
	p.put(c)
	if rerr != nil {
		return nil, false, leanAnswered, rerr
	}
	return v, corrupt, leanAnswered, nil
}

// smallEnd is smallReadEnd as text.
var smallEnd = strconv.Itoa(smallReadMax)

// broken closes c after a failure. A timeout or a reply that could not be
// read stands (leanFailed); a connection that failed otherwise (closed
// by the server, reset) asks for the go-redis path, and the idle
// connections, likely as dead, are closed.
func (p *leanPool) broken(c *leanConn, err error) ([]byte, bool, leanOutcome, error) {
	_ = c.nc.Close()
	if isTimeout(err) || errors.Is(err, errProtocol) {
		return nil, false, leanFailed, err
	}
	p.drain()
	return nil, false, leanFallback, err
}

// warm opens up to n connections at once (at most the idle limit) and
// leaves them idle, so that a burst of hits after New does not dial on the
// request path. It fails open, and returns when ctx ends.
func (p *leanPool) warm(ctx context.Context, n int) {
	if !p.guard.noInfo.Load() && !p.guard.seen(p.addr) {
		return // go-redis reached no server: a Load dials once one answers
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	var wg sync.WaitGroup
	for range min(n, p.maxIdle) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := p.dial(ctx, deadline); err == nil {
				c.used = time.Now().UnixNano()
				p.put(c)
			}
		}()
	}
	wg.Wait()
}

// put returns a connection whose replies were all read (c.used set).
func (p *leanPool) put(c *leanConn) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		_ = c.nc.Close()
	}
}

// drain closes the idle connections.
func (p *leanPool) drain() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// close closes the idle connections; connections in use are closed when
// they come back.
func (p *leanPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.drain()
}

// LeanLoads is the number of Loads answered on the lean read path (one
// round trip each, on the backend's own connections rather than
// go-redis's); 0 when the backend reads through go-redis only.
func (b *Backend) LeanLoads() uint64 {
	if b.lean == nil {
		return 0
	}
	return b.lean.loads.Load()
}
