package core

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	mcbe "github.com/routecache/routecache/core/backend/memcache"
	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// Session 10 review: the coherence promises under faults a remote store
// really has — counters that expire or are evicted — on the test servers
// (ROUTECACHE_TEST_REDIS, ROUTECACHE_TEST_MEMCACHE). Each test states the
// promise it guards and the fault it injects.

// s10Backends are the remote backends the tests run on: a plain Redis and
// a Memcached (the cluster behaves as Redis here: one counter, one slot).
func s10Backends(t *testing.T) map[string]string {
	return map[string]string{
		"redis":    "redis://" + backendtest.Server(t, "ROUTECACHE_TEST_REDIS") + "/0?timeout=5s",
		"memcache": "memcache://" + strings.Split(backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE"), ",")[0] + "?timeout=5s",
	}
}

// s10Evict deletes a counter from the region's store, as an eviction
// (maxmemory, memcached's LRU) or its expiry would.
func s10Evict(t *testing.T, r *Region, name string) {
	t.Helper()
	switch be := r.be.(type) {
	case *redisbe.Backend:
		if err := be.Client().Del(context.Background(), name).Err(); err != nil {
			t.Fatal(err)
		}
	case *mcbe.Backend:
		if err := be.Client().Delete(name); err != nil && !strings.Contains(err.Error(), "cache miss") {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no eviction for %T", r.be)
	}
}

// s10Serve serves GET /items/1 on rt with handler h.
func s10Serve(t *testing.T, rt *Route, h func(w http.ResponseWriter, r *http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	err := rt.handle(w, httptest.NewRequest("GET", "/items/1", nil), mapParams{"id": "1"}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Promise: no request that starts after InvalidateTags returned nil is
// answered with a response whose handler started before it — here for a
// tag the handler added at run time (AddTags) during a refresh (an early
// refresh; stale-while-revalidate and soft invalidation refresh the same
// way).
//
// Fault: the tag epoch counter is missing when the refresh reads it (it
// expires one counter lifetime after the last tag invalidation: entries
// do not record it, so no store renews it), and the epoch the
// invalidation re-creates is evicted before the refresh reads it again.
// The refresh read the epoch without creating it (0), read the runtime
// tag's counter after its bump, found the epoch missing again (0 == 0),
// and stored the old response under the tag's new value: a HIT of the
// old response after the invalidation had returned.
func TestRefreshWithRuntimeTagsAcrossALostEpochIsNotServed(t *testing.T) {
	for name, url := range s10Backends(t) {
		t.Run(name, func(t *testing.T) {
			c, err := New(Config{Regions: map[string]RegionConfig{"r": {
				Backend: url, Prefix: fmt.Sprintf("s10e%d", backend.FreshCounter()%1e12),
				TTL: time.Hour, EarlyRefresh: 1e12, // every hit refreshes
			}}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			r := c.regions["r"]
			rt, err := c.Route("r")
			if err != nil {
				t.Fatal(err)
			}
			var version, calls atomic.Int64
			version.Store(1)
			h := func(w http.ResponseWriter, req *http.Request) {
				v := version.Load() // the handler reads its data
				AddTags(req.Context(), "item")
				if calls.Add(1) == 2 { // the refresh
					// The data changes and its invalidation completes while
					// the refresh runs; then the epoch it re-created is
					// evicted.
					version.Store(2)
					if err := c.InvalidateTags(context.Background(), "item"); err != nil {
						t.Error(err)
					}
					s10Evict(t, r, r.epochCounter)
				}
				fmt.Fprintf(w, "v%d", v)
			}
			if w := s10Serve(t, rt, h); xcache(w) != "MISS" || w.Body.String() != "v1" {
				t.Fatalf("first request: %s %q, want MISS v1", xcache(w), w.Body.String())
			}
			// No tag invalidation for a counter lifetime: the epoch expired.
			s10Evict(t, r, r.epochCounter)
			if w := s10Serve(t, rt, h); xcache(w) != "HIT" || w.Body.String() != "v1" {
				t.Fatalf("second request: %s %q, want HIT v1 (then the refresh)", xcache(w), w.Body.String())
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("the handler ran %d times, want 2 (the fill and the refresh)", n)
			}
			// InvalidateTags returned before this request began.
			if w := s10Serve(t, rt, h); w.Body.String() == "v1" {
				t.Fatalf("after the invalidation: %s %q, the response from before it", xcache(w), w.Body.String())
			}
		})
	}
}

var _ = io.Discard
var _ redis.UniversalClient

// s10Cluster is a private Redis Cluster of three masters, no replicas,
// started by the test (and stopped by PID at its end): a short
// cluster-node-timeout, so that a node stopped for a second loses its
// cluster bus links, and cluster-require-full-coverage off, so that the
// other nodes serve their slots meanwhile.
type s10Cluster struct {
	t     *testing.T
	addrs []string
	cmds  map[string]*exec.Cmd
	admin *redis.ClusterClient
}

// s10ClusterPort finds a port free with its cluster bus port (+10000).
func s10ClusterPort(t *testing.T) string {
	t.Helper()
	for i := 0; i < 200; i++ {
		p := 29000 + int(backend.FreshCounter()%1000)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return strconv.Itoa(p)
	}
	t.Fatal("no free port pair for a cluster node")
	return ""
}

func s10StartCluster(t *testing.T) *s10Cluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found under CI=true", bin)
			}
			t.Skipf("%s not installed", bin)
		}
	}
	dir := t.TempDir()
	cl := &s10Cluster{t: t, cmds: map[string]*exec.Cmd{}}
	t.Cleanup(cl.stop)
	for i := 0; i < 3; i++ {
		port := s10ClusterPort(t)
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+port+".conf",
			"--cluster-node-timeout", "200", "--cluster-require-full-coverage", "no")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + port
		cl.addrs = append(cl.addrs, addr)
		cl.cmds[addr] = cmd
	}
	for _, a := range cl.addrs {
		s9WaitFor(t, a+" to answer", func() bool {
			c := redis.NewClient(&redis.Options{Addr: a})
			defer c.Close()
			return c.Ping(context.Background()).Err() == nil
		})
	}
	args := append([]string{"--cluster", "create"}, cl.addrs...)
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	cl.waitHealthy()
	cl.admin = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.addrs})
	t.Cleanup(func() { cl.admin.Close() })
	return cl
}

// stop kills every node by its PID and reaps it.
func (cl *s10Cluster) stop() {
	for _, cmd := range cl.cmds {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// waitHealthy waits until every node reports the cluster ok and every
// bus link connected.
func (cl *s10Cluster) waitHealthy() {
	cl.t.Helper()
	s9WaitFor(cl.t, "the cluster to be healthy", func() bool {
		for _, a := range cl.addrs {
			c := redis.NewClient(&redis.Options{Addr: a})
			info, err1 := c.ClusterInfo(context.Background()).Result()
			nodes, err2 := c.ClusterNodes(context.Background()).Result()
			c.Close()
			if err1 != nil || err2 != nil || !strings.Contains(info, "cluster_state:ok") || strings.Contains(nodes, "disconnected") || strings.Contains(nodes, "fail") {
				return false
			}
		}
		return true
	})
}

// owner is the address of the node serving key's slot.
func (cl *s10Cluster) owner(key string) string {
	cl.t.Helper()
	slot, err := cl.admin.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		cl.t.Fatal(err)
	}
	slots, err := cl.admin.ClusterSlots(context.Background()).Result()
	if err != nil {
		cl.t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr
		}
	}
	cl.t.Fatalf("no node serves slot %d", slot)
	return ""
}

// failed reports whether the node at from flags the node at to as
// failing (past cluster-node-timeout without an answer: its bus link was
// dropped on the way, at half that time).
func (cl *s10Cluster) failed(from, to string) bool {
	c := redis.NewClient(&redis.Options{Addr: from})
	defer c.Close()
	nodes, err := c.ClusterNodes(context.Background()).Result()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && strings.HasPrefix(f[1], to+"@") {
			return strings.Contains(f[2], "fail")
		}
	}
	return false
}

// Promise (docs/invalidation.md, "Several instances"): with a near cache
// on Redis, another instance's invalidation reaches this one's near cache
// through pub/sub; it may serve an invalidated entry for the time the
// message takes to arrive, and uses no local counter while its
// subscription is down.
//
// Fault: on a Redis Cluster, the near cache subscribes on one node (the
// channel's slot's), and an invalidation is published by the node holding
// the counter, which forwards it over the cluster bus. The subscription's
// node is stopped (SIGSTOP) for about 0.6 s, long enough for the others
// to drop their bus links to it (cluster-node-timeout 200 ms), shorter
// than a silent subscription takes to be found down; its subscribers'
// connections stay up. Messages
// published while a link is down are never forwarded: the subscription
// never learns of them, and the near cache served the invalidated entries
// from its local counters for as long as they lived (here an hour).
func TestNearCacheOnClusterLosesNoInvalidationOverABusOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cl := s10StartCluster(t)
	url := "redis+cluster://" + strings.Join(cl.addrs, ",") + "?timeout=5s"
	subNode := cl.owner(redisbe.InvalidationChannel) // where B's subscription lives
	// A prefix whose tag epoch lives on another node than subNode, and
	// items whose tags' counters too: those invalidations are forwarded
	// over the bus to subNode's subscribers.
	var prefix string
	var a, b *Cache
	for {
		prefix = fmt.Sprintf("s10c%d", backend.FreshCounter()%1e12)
		a = s9Open(t, url, prefix, false)
		if cl.owner(a.regions["r"].epochCounter) != subNode {
			break
		}
	}
	b = s9Open(t, url+"&near_max_bytes=16MiB", prefix, false)
	nb := b.regions["r"].near
	s9WaitFor(t, "B to subscribe", func() bool { return nb.Stats().Coherent })
	ra := a.regions["r"]
	var ids []string
	for i := 0; len(ids) < 300; i++ {
		id := strconv.Itoa(i)
		if cl.owner(ra.tagCounter("item:"+id)) != subNode {
			ids = append(ids, id)
		}
	}
	rtA, rtB := s9Route(t, a, "item:{id}"), s9Route(t, b, "item:{id}")
	for _, id := range ids {
		s9Serve(t, rtB, id, "old "+id)
		for i := 0; i < 2; i++ { // the second hit reads B's local counters
			if w := s9Serve(t, rtB, id, "new "+id); xcache(w) != "HIT" || w.Body.String() != "old "+id {
				t.Fatalf("item %s at B: %s %q, want HIT old", id, xcache(w), w.Body.String())
			}
		}
	}
	_ = rtA
	cmd := cl.cmds[subNode]
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	var origins []string
	for _, addr := range cl.addrs {
		if addr != subNode {
			origins = append(origins, addr)
		}
	}
	stoppedAt := time.Now()
	s9WaitFor(t, "the other nodes to flag the stopped one failing", func() bool {
		return cl.failed(origins[0], subNode) && cl.failed(origins[1], subNode)
	})
	// Each item changes once, and its invalidation completes, while the
	// node is stopped; spread over a few of the links' reconnection
	// cycles (node timeout 200 ms: a cycle is about 100 ms). The whole
	// stop is meant to stay under a second, shorter than B takes to find
	// a silent subscription down (TestNearCacheStopsTrustingASilentSubscription),
	// so that only the lost messages are tested here.
	tick := time.NewTicker(time.Millisecond)
	for _, id := range ids {
		<-tick.C
		if err := a.InvalidateTags(context.Background(), "item:"+id); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	t.Logf("the node was stopped for %v", time.Since(stoppedAt).Round(time.Millisecond))
	cl.waitHealthy()
	// Every invalidation returned nil before these requests began: B may
	// serve an old entry only until the message reaches it.
	var old []string
	logged := 0
	s9WaitFor(t, "B to stop serving invalidated entries", func() bool {
		old = old[:0]
		for _, id := range ids {
			if w := s9Serve(t, rtB, id, "new "+id); w.Body.String() == "old "+id {
				old = append(old, id)
			}
		}
		if len(old) > 0 && len(old) != logged {
			logged = len(old)
			t.Logf("B still serves %d of %d invalidated entries (e.g. item %s)", len(old), len(ids), old[0])
		}
		return len(old) == 0
	})
}

// s10Proxy forwards TCP connections to a server and can hold everything
// it forwards, both ways, while keeping the connections open: a network
// partition between one instance and its Redis (a link blackholed, a
// peer unreachable) in which writes still succeed into socket buffers.
type s10Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	gate   chan struct{} // closed while traffic flows
	conns  []net.Conn
}

func s10StartProxy(t *testing.T, target string) *s10Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &s10Proxy{ln: ln, target: target, gate: make(chan struct{})}
	close(p.gate)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *s10Proxy) addr() string { return p.ln.Addr().String() }

func (p *s10Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies from src to dst, holding each chunk while the gate is shut.
func (p *s10Proxy) pipe(src, dst net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold stops all traffic (connections stay open); flow resumes it.
func (p *s10Proxy) hold() {
	p.mu.Lock()
	p.gate = make(chan struct{})
	p.mu.Unlock()
}

func (p *s10Proxy) flow() {
	p.mu.Lock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	p.mu.Unlock()
}

func (p *s10Proxy) close() {
	p.flow()
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// Promise (docs/invalidation.md, "Several instances"): a near cache on
// Redis serves an entry another instance invalidated only for the time
// the message takes to reach it, and uses no local counter while its
// subscription is down.
//
// Fault: the network between B and Redis goes silent (a partition, a
// blackholed route) while A still reaches Redis; B's connections stay
// open and its writes succeed into socket buffers. B's subscription
// pinged every 5 s of quiet and counted only a failed write as a lost
// subscription, never a ping left unanswered: it stayed "coherent", and B
// answered from its local counters the entries A had invalidated, for as
// long as the partition lasted.
func TestNearCacheStopsTrustingASilentSubscription(t *testing.T) {
	addr := backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
	px := s10StartProxy(t, addr)
	prefix := fmt.Sprintf("s10p%d", backend.FreshCounter()%1e12)
	a := s9Open(t, "redis://"+addr+"/0?timeout=5s", prefix, false)
	b := s9Open(t, "redis://"+px.addr()+"/0?timeout=500ms&near_max_bytes=4MiB", prefix, false)
	nb := b.regions["r"].near
	s9WaitFor(t, "B to subscribe", func() bool { return nb.Stats().Coherent })
	rtB := s9Route(t, b, "item:{id}")
	s9Serve(t, rtB, "1", "old")
	for i := 0; i < 2; i++ {
		if w := s9Serve(t, rtB, "1", "new"); xcache(w) != "HIT" || w.Body.String() != "old" {
			t.Fatalf("B: %s %q, want HIT old", xcache(w), w.Body.String())
		}
	}
	if !s9Fast(t, rtB, "1") {
		t.Fatal("B does not answer from its near cache alone")
	}
	px.hold()
	defer px.flow()
	if err := a.InvalidateTags(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	// The invalidation returned; its message cannot reach B. B may serve
	// the old entry only until it stops trusting its subscription.
	s9WaitFor(t, "B to stop answering the invalidated entry", func() bool {
		return s9Serve(t, rtB, "1", "new").Body.String() != "old"
	})
	px.flow()
	s9WaitFor(t, "B to trust its subscription again", func() bool { return nb.Stats().Coherent })
}
