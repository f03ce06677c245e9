package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core/backend"

	"github.com/redis/go-redis/v9"
)

// Connection-level concerns of the Redis backend: admission of operations
// to the connection pool, pool warm-up, and the detection of a restarted
// or restored server.

// ---------------------------------------------------------------------------
// Admission: queueing for a connection is not a backend failure
// ---------------------------------------------------------------------------

// admission bounds the operations in flight on one Redis backend to the
// pool's size, so that an operation never waits inside go-redis's pool
// under its own deadline (the URL's timeout, which bounds the network
// round trip and its retries). Waiting for a slot has its own budget
// (go-redis's pool_timeout, by default timeout + 1 s), cut short when the
// server looks stalled: a command failed (timed out, connection lost)
// after the wait began and none succeeded since. Waiting alone proves
// nothing: under a burst on a busy machine commands complete late, but
// they complete.
type admission struct {
	slots    chan struct{}
	wait     time.Duration // budget for waiting for a slot
	timeout  time.Duration // the operation's own budget
	progress atomic.Int64  // unix nanos of the server's last answer (±1 ms)
	failure  atomic.Int64  // unix nanos of the last command failed by the network
}

func newAdmission(size int, wait, timeout time.Duration) *admission {
	return &admission{slots: make(chan struct{}, max(size, 1)), wait: wait, timeout: timeout}
}

// enter takes a slot. It returns ctx's error if the caller went away, or
// an error wrapping backend.ErrQueued.
func (a *admission) enter(ctx context.Context) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	start := time.Now()
	tick := max(a.timeout/4, time.Millisecond)
	t := time.NewTimer(tick)
	defer t.Stop()
	for {
		select {
		case a.slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			waited := time.Since(start)
			f := a.failure.Load()
			stalled := f > start.UnixNano() && f > a.progress.Load()
			if waited >= a.wait || stalled {
				return fmt.Errorf("%w: waited %v for one of %d connections", backend.ErrQueued, waited.Round(time.Millisecond), cap(a.slots))
			}
			t.Reset(tick)
		}
	}
}

// leave frees a slot.
func (a *admission) leave() { <-a.slots }

// alive records that the server answered a command (at most one shared
// write per millisecond).
func (a *admission) alive() {
	now := time.Now().UnixNano()
	if now-a.progress.Load() > int64(time.Millisecond) {
		a.progress.Store(now)
	}
}

// connHook turns an operation refused by admission (its context carries
// backend.ErrQueued as the cause) into that error, without touching the pool;
// marks go-redis's own pool timeouts the same way; and gives a command
// that timed out one more attempt when the server answered other commands
// meanwhile (see retryable).
type connHook struct{ a *admission }

// DialHook passes dials through.
func (connHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook reports a queued operation's cause (see admission).
func (h connHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := refused(ctx); err != nil {
			cmd.SetErr(err)
			return err
		}
		start := h.began(ctx)
		err := next(ctx, cmd)
		if h.retryable(err, start) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.a.timeout)
			err = next(rctx, cmd)
			cancel()
		}
		return h.done(err, cmd)
	}
}

// ProcessPipelineHook does for pipelines what ProcessHook does.
func (h connHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := refused(ctx); err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		start := h.began(ctx)
		err := next(ctx, cmds)
		if h.retryable(err, start) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.a.timeout)
			err = next(rctx, cmds)
			cancel()
		}
		answered := false
		for _, c := range cmds {
			ok, _ := h.record(c.Err(), c)
			answered = answered || ok
		}
		if answered {
			h.a.alive() // once per pipeline: it reads the clock
		}
		if errors.Is(err, redis.ErrPoolTimeout) {
			err = fmt.Errorf("%w: %w", backend.ErrQueued, err)
		}
		return err
	}
}

// done records the server's progress and marks pool timeouts as queueing.
func (h connHook) done(err error, cmd redis.Cmder) error {
	answered, err := h.record(err, cmd)
	if answered {
		h.a.alive()
	}
	return err
}

// record reports whether the server answered the command (the caller
// then records progress, once per pipeline: that reads the clock), marks
// a pool timeout as queueing (the error returned), and records a failure
// by the network.
func (h connHook) record(err error, cmd redis.Cmder) (bool, error) {
	switch {
	case err == nil || errors.Is(err, redis.Nil) || isRedisReply(err):
		return true, err
	case errors.Is(err, redis.ErrPoolTimeout):
		err = fmt.Errorf("%w: %w", backend.ErrQueued, err)
		cmd.SetErr(err)
	case errors.Is(err, backend.ErrQueued) || errors.Is(err, context.Canceled):
	default:
		h.a.failure.Store(time.Now().UnixNano())
	}
	return false, err
}

// began returns when the operation began: its deadline minus the timeout
// (op sets it when the operation is admitted; the goroutine may have waited
// for a CPU since), or now.
func (h connHook) began(ctx context.Context) int64 {
	if dl, ok := ctx.Deadline(); ok {
		return dl.UnixNano() - int64(h.a.timeout)
	}
	return time.Now().UnixNano()
}

// retryable reports a timeout of a command begun at start while the server
// answered others: the answer was late because this process was (its
// goroutines waiting for a CPU, a burst's first dials), not because the
// server stopped. One more attempt, on a fresh budget, is then worth more
// than a bypass and a strike against the breaker. Against a server that
// stalls nothing completes, and the timeout stands.
func (h connHook) retryable(err error, start int64) bool {
	if err == nil || !isTimeout(err) {
		return false
	}
	return h.a.progress.Load() > start
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func refused(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	if c := context.Cause(ctx); errors.Is(c, backend.ErrQueued) {
		return c
	}
	return nil
}

// poolSize is go-redis's default when the URL sets none.
func poolSize(size int, cluster bool) int {
	if size > 0 {
		return size
	}
	if cluster {
		return 5 * runtime.GOMAXPROCS(0)
	}
	return 10 * runtime.GOMAXPROCS(0)
}

// ---------------------------------------------------------------------------
// Warm-up
// ---------------------------------------------------------------------------

// maxWarmConns bounds the connections dialled per node when a Cache is built.
const maxWarmConns = 32

// warm opens up to warmConns connections to every node (each is
// initialised, so the restart check below runs for it) and leaves them idle
// in the pool. It fails open: errors are ignored, and it returns when ctx
// ends (New bounds it).
func (b *Backend) warm(ctx context.Context) {
	n := b.warmConns
	if n <= 0 {
		return
	}
	switch c := b.client.(type) {
	case *redis.Client:
		warmClient(ctx, c, n)
		if b.lean != nil {
			b.lean.warm(ctx, n) // after go-redis's: its connections ran the restart check
		}
	case *redis.ClusterClient:
		_ = c.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
			warmClient(ctx, node, n)
			return nil
		})
	}
}

func warmClient(ctx context.Context, c *redis.Client, n int) {
	// n pings at once, each waiting for a connection of its own from an
	// empty pool: about n dials. (c.Conn() would hold exactly n, but
	// go-redis's sticky connections race on the client's options while
	// they are initialised.)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Ping(ctx).Err()
		}()
	}
	wg.Wait()
}

// ---------------------------------------------------------------------------
// Restarted or restored servers
// ---------------------------------------------------------------------------

// A Redis restarted with persistence, restored from a snapshot, or replaced
// by a promoted replica holds counters and entries from some earlier time:
// an invalidation acknowledged after that time is lost, and the entries it
// had invalidated match their counters again. So every entry written
// before such an event must become unusable.
//
// Each node keeps, for each region counter, a marker "<counter>:epoch" (on
// a cluster "<counter>:epoch:{tag}", the tag chosen so that the key lives
// on that node) holding the run_id of the server incarnation that last
// vouched for the region's data there. When a connection is opened (go-redis's
// OnConnect, which runs before the connection is used), the server's run_id
// is read; unless this process already checked the node under that run_id,
// every region counter whose field does not hold the current run_id (a
// restored snapshot holds the old one; a new or flushed server none) gets a
// fresh random value, which invalidates all of the region's entries, and
// the field is then set. The check lives in the data, not only in the
// process: a Cache built after the restore detects it too.
//
// Costs: one INFO per new connection, plus one MGET per node the first
// time; after a restart, every region misses once.

// restartGuard holds what the OnConnect hook needs.
type restartGuard struct {
	groups atomic.Pointer[[]backend.RegionCounters] // set by Prepare; nil until then
	mu     sync.Mutex                               // guards what follows
	nodes  map[string]*nodeEpoch
	// onReset runs after counters were reset or a node's run_id changed
	// (a near cache drops its local counters).
	onReset []func()
	log     *slog.Logger
	noInfo  atomic.Bool   // INFO is refused: restarts cannot be detected
	resets  atomic.Uint64 // region counters reset after a restart
	// gen moves on whenever what the check vouches for may have changed (a
	// node's run_id or verification, the regions): the lean read path
	// (lean.go) reuses a connection only under the generation it was
	// vouched for.
	gen atomic.Uint64
}

type nodeEpoch struct {
	lock     chan struct{} // one check at a time per node; waits honour ctx
	runID    string
	verified bool   // the markers were checked under runID
	restored bool   // the last check found markers of another run_id
	tag      string // cluster: a hash tag of a slot the node owns
}

func (g *restartGuard) node(addr string) *nodeEpoch {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.nodes == nil {
		g.nodes = map[string]*nodeEpoch{}
	}
	n := g.nodes[addr]
	if n == nil {
		n = &nodeEpoch{lock: make(chan struct{}, 1)}
		g.nodes[addr] = n
	}
	return n
}

// configure sets the logger and adds a reset callback.
func (g *restartGuard) configure(log *slog.Logger, onReset func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = log
	if onReset != nil {
		g.onReset = append(g.onReset, onReset)
	}
}

func (g *restartGuard) logger() *slog.Logger {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.log == nil {
		return slog.Default()
	}
	return g.log
}

// setRegions registers the region counters to reset, grouped by prefix;
// nodes already seen are checked again at their next connection.
func (g *restartGuard) setRegions(groups []backend.RegionCounters) {
	g.groups.Store(&groups)
	g.gen.Add(1)
}

// seen reports whether a connection to addr has been checked (a hint:
// vouches decides).
func (g *restartGuard) seen(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodes[addr] != nil
}

// vouches reports whether a connection to the node at addr, whose server
// runs as runID, may be read from as checkNode would let a go-redis
// connection: the node was checked under that run_id (or there are no
// region counters to check yet, as checkNode lets connections through
// then), and returns the generation under which that holds. It waits
// for a check in progress on the node (or another connection's vouching)
// until deadline, and answers no if that does not end by then: the caller
// then reads through go-redis, whose connection waits for the check.
func (g *restartGuard) vouches(addr, runID string, deadline time.Time) (uint64, bool) {
	g.mu.Lock()
	n := g.nodes[addr]
	g.mu.Unlock()
	if n == nil {
		return 0, false
	}
	select {
	case n.lock <- struct{}{}:
	default:
		t := time.NewTimer(time.Until(deadline))
		select {
		case n.lock <- struct{}{}:
			t.Stop()
		case <-t.C:
			return 0, false
		}
	}
	defer func() { <-n.lock }()
	gen := g.gen.Load()
	groups := g.groups.Load()
	ok := n.runID == runID && (n.verified || groups == nil || len(*groups) == 0)
	return gen, ok
}

// onConnect is the go-redis OnConnect hook of the node at addr.
func (b *Backend) onConnect(addr string) func(ctx context.Context, cn *redis.Conn) error {
	return func(ctx context.Context, cn *redis.Conn) error {
		return b.checkNode(ctx, cn, addr)
	}
}

func (b *Backend) checkNode(ctx context.Context, cn *redis.Conn, addr string) error {
	g := &b.guard
	if g.noInfo.Load() {
		return nil
	}
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		if isRedisReply(err) { // INFO renamed or refused by an ACL
			if !g.noInfo.Swap(true) {
				g.logger().Warn("routecache: INFO refused by Redis: a restarted or restored server cannot be detected", "addr", addr, "err", err)
			}
			return nil
		}
		return err
	}
	runID := infoField(info, "run_id")
	if runID == "" {
		return nil
	}
	n := g.node(addr)
	select {
	case n.lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-n.lock }()
	groups := g.groups.Load()
	if n.runID == runID && (n.verified || groups == nil) {
		return nil
	}
	changed := n.runID != "" && n.runID != runID
	if n.runID != runID || n.verified {
		g.gen.Add(1) // lean connections vouched for before no longer are
	}
	n.runID, n.verified = runID, false
	if changed {
		defer g.reset()
	}
	if groups == nil || len(*groups) == 0 {
		return nil // New has not registered the regions yet: it checks then
	}
	reset, err := b.verifyMarkers(ctx, cn, n, runID, *groups)
	if err != nil {
		return err
	}
	n.verified = true
	if len(reset) > 0 {
		g.resets.Add(uint64(len(reset)))
		if n.restored {
			g.logger().Warn("routecache: Redis restarted, restored or replaced (its data was written under another run_id): region counters reset, every entry of these regions misses once",
				"addr", addr, "run_id", runID, "counters", reset)
		} else {
			g.logger().Info("routecache: first use of these regions on this Redis server (or its markers were lost): region counters reset",
				"addr", addr, "run_id", runID, "counters", reset)
		}
		if !changed {
			g.reset()
		}
	}
	return nil
}

func (g *restartGuard) reset() {
	g.mu.Lock()
	fs := g.onReset
	g.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// verifyMarkers compares the node's markers with runID, resets the region
// counters whose marker differs, then sets the markers. It returns the
// counters reset.
func (b *Backend) verifyMarkers(ctx context.Context, cn *redis.Conn, n *nodeEpoch, runID string, groups []backend.RegionCounters) ([]string, error) {
	if b.cluster && n.tag == "" {
		tag, ok, err := ownedTag(ctx, cn)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, nil // the node serves no slot: no data of ours
		}
		n.tag = tag
	}
	var keys, counters []string
	for _, gr := range groups {
		for _, c := range gr.Counters {
			k := c + ":epoch"
			if b.cluster {
				k += ":{" + n.tag + "}" // the slot of the tag, on this node
			}
			keys = append(keys, k)
			counters = append(counters, c)
		}
	}
	// Bounded reads: a huge value planted under a marker costs a few dozen
	// bytes (and reads as no marker: the region is reset).
	pipe := cn.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = smallRead(ctx, pipe, k)
	}
	if err := execErr(pipe.Exec(ctx)); err != nil {
		return nil, err
	}
	vals := make([]string, len(keys))
	for i, c := range cmds {
		v, err := smallResult(c)
		if err != nil {
			if b.cluster && isRedisReply(err) {
				n.tag = "" // the slot moved: find another at the next connection
			}
			return nil, err
		}
		vals[i] = v
	}
	var reset []string
	restored := false
	for i, c := range counters {
		if v := vals[i]; v != runID {
			reset = append(reset, c)
			restored = restored || v != ""
		}
	}
	n.restored = restored
	for _, c := range reset {
		if err := b.resetCounter(ctx, cn, c); err != nil {
			return nil, err
		}
	}
	if len(reset) > 0 {
		args := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			args = append(args, k, runID)
		}
		if err := cn.MSet(ctx, args...).Err(); err != nil {
			return nil, err
		}
	}
	return reset, nil
}

// resetCounter gives a region counter a fresh random value (an
// invalidation: a value it never had). On a cluster the counter may live on
// another node: the new connection answers MOVED, and the counter is set
// through a connection of its own to the node named there. (Not through
// the cluster client: this runs inside go-redis's OnConnect, possibly for
// the connection that loads the cluster's slot map, which the cluster
// client would wait for.)
func (b *Backend) resetCounter(ctx context.Context, cn *redis.Conn, name string) error {
	v := strconv.FormatUint(backend.FreshCounter(), 10)
	err := cn.Set(ctx, name, v, 0).Err()
	for range 3 {
		addr, ok := movedTo(err)
		if !ok || !b.cluster || b.nodeOpt == nil {
			break
		}
		o := *b.nodeOpt
		o.Addr, o.OnConnect, o.PoolSize, o.MinIdleConns, o.MaxRetries = addr, nil, 1, 0, -1
		c := redis.NewClient(&o)
		err = c.Set(ctx, name, v, 0).Err()
		_ = c.Close()
	}
	return err
}

// movedTo reads the node named by a MOVED or ASK reply.
func movedTo(err error) (string, bool) {
	if err == nil || !isRedisReply(err) {
		return "", false
	}
	f := strings.Fields(err.Error())
	if len(f) == 3 && (f[0] == "MOVED" || f[0] == "ASK") {
		return f[2], true
	}
	return "", false
}

// infoField reads "name:value" from an INFO reply.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ownedTag finds a hash tag whose slot the node behind cn serves, from its
// CLUSTER NODES line flagged "myself".
func ownedTag(ctx context.Context, cn *redis.Conn) (string, bool, error) {
	nodes, err := cn.ClusterNodes(ctx).Result()
	if err != nil {
		return "", false, err
	}
	var ranges [][2]int
	for line := range strings.SplitSeq(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(","+f[2]+",", ",myself,") {
			continue
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being imported or migrated
			}
			lo, hi, isRange := strings.Cut(s, "-")
			a, err1 := strconv.Atoi(lo)
			z := a
			var err2 error
			if isRange {
				z, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil {
				ranges = append(ranges, [2]int{a, z})
			}
		}
	}
	if len(ranges) == 0 {
		return "", false, nil
	}
	for i := 0; i < 1<<20; i++ {
		tag := strconv.Itoa(i)
		s := int(crc16(tag) % 16384)
		for _, r := range ranges {
			if s >= r[0] && s <= r[1] {
				return tag, true, nil
			}
		}
	}
	return "", false, nil
}

// crc16 is Redis Cluster's key hash (CRC16-CCITT, XMODEM).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
