package core_test

import (
	"bufio"
	"bytes"
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

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
	memcachebe "github.com/routecache/routecache/core/backend/memcache"
	redisbe "github.com/routecache/routecache/core/backend/redis"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core/backend"
)

// Fault injection against real servers. Each test starts its own private
// redis-server or memcached on a free loopback port, so it can kill,
// freeze (SIGSTOP) and restart it without disturbing the shared test
// servers; every process is stopped by its PID in t.Cleanup. Under CI=true
// a missing binary fails the test; elsewhere it skips.
//
// Latency is never asserted as a wall-clock threshold on one request:
// requests slower than the backend timeout plus a generous margin are
// counted, and the count must stay small relative to the total.

// serverProc is one server process this test started.
type serverProc struct {
	t     testing.TB
	kind  string // "redis" or "memcached"
	port  string
	cmd   *exec.Cmd
	out   bytes.Buffer
	debug bool     // redis: DEBUG is enabled (Redis 7+)
	extra []string // redis: more arguments (e.g. --dir for SAVE and a restart from the RDB)
	// waited is closed when the running process has exited and been reaped.
	waited chan struct{}
}

func requireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found under CI=true: fault-injection tests need it", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// startRedisProc starts a private, non-persistent redis-server.
func startRedisProc(t testing.TB) *serverProc {
	requireBinary(t, "redis-server")
	s := &serverProc{t: t, kind: "redis", port: freePort(t)}
	s.debug = redisMajor(t) >= 7
	s.start()
	t.Cleanup(s.kill)
	return s
}

// startMemcachedProc starts a private memcached (TCP only).
func startMemcachedProc(t testing.TB) *serverProc {
	requireBinary(t, "memcached")
	s := &serverProc{t: t, kind: "memcached", port: freePort(t)}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func redisMajor(t testing.TB) int {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// "Redis server v=7.0.15 sha=..."
	_, v, ok := strings.Cut(string(out), "v=")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	return n
}

func (s *serverProc) addr() string { return "127.0.0.1:" + s.port }

func (s *serverProc) start() {
	s.t.Helper()
	var args []string
	switch s.kind {
	case "redis":
		args = []string{"--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
		if s.debug {
			args = append(args, "--enable-debug-command", "local")
		}
		args = append(args, s.extra...)
		s.cmd = exec.Command("redis-server", args...)
	case "memcached":
		args = []string{"-l", "127.0.0.1", "-p", s.port, "-U", "0"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root")
		}
		s.cmd = exec.Command("memcached", args...)
	}
	s.out.Reset()
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.kind, err)
	}
	exited := make(chan struct{})
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	for i := 0; i < 200; i++ {
		select {
		case <-exited:
			s.t.Fatalf("%s exited at start: %s", s.kind, s.out.String())
		default:
		}
		if s.ping() == nil {
			s.waited = exited
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s on %s never answered: %s", s.kind, s.addr(), s.out.String())
}

// ping asks the server for a sign of life on a fresh connection.
func (s *serverProc) ping() error {
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	cmd, want := "PING\r\n", "+PONG"
	if s.kind == "memcached" {
		cmd, want = "version\r\n", "VERSION"
	}
	if _, err := io.WriteString(c, cmd); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("unexpected %q", line)
	}
	return nil
}

// kill ends the process with SIGKILL (a crash) and reaps it.
func (s *serverProc) kill() {
	if s.cmd == nil || s.cmd.Process == nil || s.waited == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.waited
	s.waited = nil
}

func (s *serverProc) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v to %s (pid %d): %v", sig, s.kind, s.cmd.Process.Pid, err)
	}
}

// loadStats summarises one batch of requests.
type loadStats struct {
	total, bad, slow int
	overTimeout      int // slower than the backend timeout itself
	xcache           map[string]int
	maxLatency       time.Duration
	badExamples      []string
}

func (l *loadStats) add(o loadStats) {
	l.total += o.total
	l.bad += o.bad
	l.slow += o.slow
	l.overTimeout += o.overTimeout
	if l.xcache == nil {
		l.xcache = map[string]int{}
	}
	for k, v := range o.xcache {
		l.xcache[k] += v
	}
	l.maxLatency = max(l.maxLatency, o.maxLatency)
	if len(l.badExamples) < 5 {
		l.badExamples = append(l.badExamples, o.badExamples...)
	}
}

// faultApp is an httptest.Server whose /items/{id} route is cached through
// the net/http middleware in region "r"; its origin answers "item <id>".
type faultApp struct {
	timeout time.Duration // the backend's, for loadStats.overTimeout
	c       *core.Cache
	srv     *httptest.Server
	client  *http.Client
	origin  atomic.Int64
}

func newFaultApp(t testing.TB, backendURL string, rc core.RegionConfig, brk core.BreakerConfig) *faultApp {
	t.Helper()
	rc.Backend = backendURL
	if rc.Prefix == "" {
		rc.Prefix = uniquePrefix(t)
	}
	if rc.TTL == 0 {
		rc.TTL = time.Minute
	}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Breaker: brk})
	if err != nil {
		t.Fatal(err)
	}
	a := &faultApp{c: c}
	mw, err := c.Middleware("r", core.Tags("item:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.origin.Add(1)
		fmt.Fprintf(w, "item %s", r.PathValue("id"))
	})))
	a.srv = httptest.NewServer(mux)
	a.client = &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 32},
		Timeout:   30 * time.Second, // a failure bound for a hung request, not a measurement
	}
	t.Cleanup(func() {
		a.srv.Close()
		c.Close()
	})
	return a
}

// load sends goroutines × perG requests over 16 keys and checks each
// answer: 200 with the body of its key. A request slower than slowOver is
// counted, not failed.
func (a *faultApp) load(goroutines, perG int, slowOver time.Duration) loadStats {
	var mu sync.Mutex
	res := loadStats{xcache: map[string]int{}}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				id := (g*perG + i) % 16
				start := time.Now()
				resp, err := a.client.Get(fmt.Sprintf("%s/items/%d", a.srv.URL, id))
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(start)
				mu.Lock()
				res.total++
				res.maxLatency = max(res.maxLatency, lat)
				if lat > slowOver {
					res.slow++
				}
				if a.timeout > 0 && lat > a.timeout {
					res.overTimeout++
				}
				switch {
				case err != nil:
					res.bad++
					res.badExamples = append(res.badExamples, err.Error())
				case resp.StatusCode != 200 || string(body) != fmt.Sprintf("item %d", id):
					res.bad++
					res.badExamples = append(res.badExamples, fmt.Sprintf("%d %q", resp.StatusCode, body))
				default:
					res.xcache[resp.Header.Get("X-Cache")]++
				}
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	return res
}

func (a *faultApp) stats() core.Stats { return a.c.Stats()["r"] }

type faultBackend struct {
	name    string
	start   func(t testing.TB) *serverProc
	url     func(addr string) string
	timeout time.Duration
}

// The backend timeouts are the production defaults' order of magnitude,
// with room for a busy test machine (CI shares its cores): a killed
// server refuses connections at once, a frozen one costs the timeout.
var faultBackends = []faultBackend{
	{"redis", startRedisProc, func(a string) string { return "redis://" + a + "/0?timeout=500ms" }, 500 * time.Millisecond},
	{"memcached", startMemcachedProc, func(a string) string { return "memcache://" + a + "?timeout=500ms" }, 500 * time.Millisecond},
}

// stuckAfter is how far past its backend timeout a request must run to
// count as stuck: a bound that catches a hang, not a latency target (a
// loaded machine stretches every request).
const stuckAfter = 5 * time.Second

// (a) The backend is killed under a steady load, then restarted on the
// same port: every request is answered 200 by the origin or the cache,
// the breaker opens and stops the calls to the dead server, and caching
// resumes on the same Cache once the server is back.
func TestFaultBackendKilledUnderLoad(t *testing.T) {
	for _, fb := range faultBackends {
		t.Run(fb.name, func(t *testing.T) {
			srv := fb.start(t)
			a := newFaultApp(t, fb.url(srv.addr()), core.RegionConfig{}, core.BreakerConfig{})
			a.timeout = fb.timeout
			slowOver := fb.timeout + stuckAfter
			const G = 8
			var all loadStats

			// Warm up: entries stored, hits served.
			warm := a.load(G, 20, slowOver)
			all.add(warm)
			if warm.xcache["HIT"] == 0 {
				t.Fatalf("warm-up served no hit: %+v stats %+v", warm, a.stats())
			}

			// Kill, and keep the load going until the breaker has opened.
			before := a.stats()
			killDone := make(chan struct{})
			var openedAfter atomic.Int64
			go func() {
				time.Sleep(20 * time.Millisecond) // mid-batch
				killed := time.Now()
				srv.kill()
				close(killDone)
				// Note when the breaker opens (a figure for the docs).
				for i := 0; i < 5000 && a.stats().BreakerOpens == before.BreakerOpens; i++ {
					time.Sleep(time.Millisecond)
				}
				openedAfter.Store(int64(time.Since(killed)))
			}()
			var dead loadStats
			dead.add(a.load(G, 25, slowOver))
			<-killDone
			for round := 0; round < 50 && a.stats().BreakerOpens == before.BreakerOpens; round++ {
				dead.add(a.load(G, 5, slowOver))
			}
			s1 := a.stats()
			if s1.BreakerOpens == before.BreakerOpens {
				t.Fatalf("breaker never opened: %+v", s1)
			}
			requestsToOpen := dead.total
			errorsToOpen := s1.Errors - before.Errors
			// While open, the dead server is left alone: errors grow by at
			// most one per probe (each failed probe re-opens the breaker)
			// plus the requests that were in flight when it opened.
			more := a.load(G, 50, slowOver)
			dead.add(more)
			s2 := a.stats()
			dErr, dOpens := s2.Errors-s1.Errors, s2.BreakerOpens-s1.BreakerOpens
			skipped := s2.Bypasses[core.BypassBreaker] - s1.Bypasses[core.BypassBreaker]
			t.Logf("%s dead: %d requests during and after the kill until the breaker opened (%d backend errors; it opened %v after the kill); then %d requests: %d backend errors, %d re-opens, %d skipped by the breaker",
				fb.name, requestsToOpen, errorsToOpen, time.Duration(openedAfter.Load()).Round(time.Millisecond), more.total, dErr, dOpens, skipped)
			if dErr > dOpens+G {
				t.Fatalf("the breaker kept calling the dead server: %d errors over %d requests with %d re-opens", dErr, more.total, dOpens)
			}
			if skipped < uint64(more.total/2) {
				t.Fatalf("only %d of %d requests were skipped by the open breaker", skipped, more.total)
			}
			all.add(dead)

			// Restart on the same port: caching resumes without a new Cache.
			restarted := time.Now()
			srv.start()
			var back loadStats
			resumed := false
			var resumedAfter time.Duration
			for round := 0; round < 100 && !resumed; round++ {
				l := a.load(G, 5, slowOver)
				back.add(l)
				if l.xcache["HIT"] > 0 {
					resumed, resumedAfter = true, time.Since(restarted)
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
			all.add(back)
			st := a.stats()
			t.Logf("%s restarted: first HIT after %d requests, %v; breaker %s", fb.name, back.total, resumedAfter.Round(time.Millisecond), st.Breaker)
			if !resumed {
				t.Fatalf("caching did not resume after the restart: %+v stats %+v", back, st)
			}
			if st.Breaker != core.BreakerClosed {
				t.Fatalf("breaker %s after recovery", st.Breaker)
			}
			t.Logf("%s totals: %d requests, %d not 200-with-the-right-body, %d slower than the %v timeout, %d slower than %v (max %v), X-Cache %v, origin calls %d; stats %+v",
				fb.name, all.total, all.bad, all.overTimeout, fb.timeout, all.slow, slowOver, all.maxLatency.Round(time.Millisecond), all.xcache, a.origin.Load(), st)
			if all.bad != 0 {
				t.Fatalf("%d requests not answered 200 with their body: %v", all.bad, all.badExamples)
			}
			if all.slow > max(G, all.total/50) {
				t.Fatalf("%d of %d requests slower than %v", all.slow, all.total, slowOver)
			}
		})
	}
}

// (b) A backend that stops answering (Redis DEBUG SLEEP, memcached frozen
// with SIGSTOP): requests are answered by the origin, counted as
// backend-error bypasses; only a few wait for the timeout (then the
// breaker opens), and none for the length of the stall.
func TestFaultSlowBackend(t *testing.T) {
	for _, fb := range faultBackends {
		t.Run(fb.name, func(t *testing.T) {
			srv := fb.start(t)
			if fb.name == "redis" && !srv.debug {
				t.Skip("redis-server < 7: DEBUG cannot be enabled from the command line")
			}
			a := newFaultApp(t, fb.url(srv.addr()), core.RegionConfig{}, core.BreakerConfig{})
			a.timeout = fb.timeout
			slowOver := fb.timeout + stuckAfter
			const stall = 3 * time.Second
			const G = 8
			if w := a.load(G, 20, slowOver); w.xcache["HIT"] == 0 || w.bad != 0 {
				t.Fatalf("warm-up: %+v", w)
			}
			before := a.stats()

			stalled := make(chan struct{})
			stallDone := make(chan struct{})
			switch fb.name {
			case "redis":
				go func() {
					defer close(stallDone)
					c, err := net.Dial("tcp", srv.addr())
					if err != nil {
						t.Error(err)
						close(stalled)
						return
					}
					defer c.Close()
					r := bufio.NewReader(c)
					for i := 0; i < int(stall/time.Second); i++ {
						fmt.Fprint(c, "DEBUG SLEEP 1\r\n")
						if i == 0 {
							time.Sleep(20 * time.Millisecond) // let the server take it
							close(stalled)
						}
						if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
							t.Errorf("DEBUG SLEEP: %q %v", line, err)
							return
						}
					}
				}()
			case "memcached":
				srv.signal(syscall.SIGSTOP)
				t.Cleanup(func() { _ = srv.cmd.Process.Signal(syscall.SIGCONT) })
				close(stalled)
				go func() {
					defer close(stallDone)
					time.Sleep(stall)
					if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
						t.Errorf("SIGCONT: %v", err)
					}
				}()
			}
			<-stalled
			var during loadStats
			verySlow := 0
			for {
				l := a.load(G, 5, slowOver)
				during.add(l)
				if l.maxLatency >= stall {
					verySlow++ // a request held as long as the stall itself
				}
				select {
				case <-stallDone:
				default:
					continue
				}
				break
			}
			st := a.stats()
			bypassed := st.Bypasses[core.BypassBackend] - before.Bypasses[core.BypassBackend]
			t.Logf("%s stalled %v: %d requests, %d slower than the timeout, %d slower than %v (max %v), %d backend-error bypasses, %d breaker skips, %d errors, %d breaker opens, X-Cache %v",
				fb.name, stall, during.total, during.overTimeout, during.slow, slowOver, during.maxLatency.Round(time.Millisecond), bypassed,
				st.Bypasses[core.BypassBreaker]-before.Bypasses[core.BypassBreaker], st.Errors-before.Errors, st.BreakerOpens-before.BreakerOpens, during.xcache)
			if during.bad != 0 {
				t.Fatalf("%d requests not answered 200 with their body: %v", during.bad, during.badExamples)
			}
			if bypassed == 0 || st.BreakerOpens == before.BreakerOpens {
				t.Fatalf("the stall went unnoticed: %+v", st)
			}
			// The first requests in flight wait for the timeout, then the
			// breaker opens; each probe after a cooldown may wait once more.
			probes := int(stall/core.DefaultBreakerCooldown) + 1
			if during.slow > G+probes {
				t.Fatalf("%d of %d requests slower than %v", during.slow, during.total, slowOver)
			}
			if verySlow > 1 {
				t.Fatalf("%d batches held a request for the whole %v stall: it reached the clients", verySlow, stall)
			}
			// Once the server answers again, caching resumes.
			resumed := false
			for round := 0; round < 100 && !resumed; round++ {
				l := a.load(G, 5, slowOver)
				if l.bad != 0 {
					t.Fatalf("after the stall: %v", l.badExamples)
				}
				resumed = l.xcache["HIT"] > 0
				if !resumed {
					time.Sleep(50 * time.Millisecond)
				}
			}
			if !resumed {
				t.Fatalf("caching did not resume after the stall: %+v", a.stats())
			}
		})
	}
}

// A breaker probe that never reports back (its request skipped the
// backend or was cancelled) must not leave the breaker half-open for
// ever: another request probes after a cooldown, and caching resumes.
func TestFaultBreakerProbeLost(t *testing.T) {
	for _, fb := range faultBackends {
		t.Run(fb.name, func(t *testing.T) {
			srv := fb.start(t)
			cool := 100 * time.Millisecond
			rc := core.RegionConfig{Backend: fb.url(srv.addr()), Prefix: uniquePrefix(t)}
			c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Breaker: core.BreakerConfig{Failures: 1, Cooldown: cool}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rt, _ := c.Route("r", core.Tags("item:{id}"))
			p := mapParams{"id": "1"}
			h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }
			serveOnce(rt, "/items/1", p, h)
			if w := serveOnce(rt, "/items/1", p, h); xc(w) != "HIT" {
				t.Fatalf("warm: %q", xc(w))
			}
			srv.kill()
			if w := serveOnce(rt, "/items/1", p, h); w.Code != 200 || xc(w) != "BYPASS" {
				t.Fatalf("dead: %d %q", w.Code, xc(w))
			}
			if st := c.Stats()["r"]; st.Breaker != core.BreakerOpen {
				t.Fatalf("breaker %s", st.Breaker)
			}
			srv.start()
			time.Sleep(cool + 20*time.Millisecond) // past the cooldown: the next request probes
			for _, probe := range []string{"cancelled", "missing-param"} {
				// The probe's request goes away before the backend answers
				// (or never reaches it): it reports nothing to the breaker.
				w := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/items/1", nil)
				pp := adapter.Params(p)
				if probe == "cancelled" {
					ctx, cancel := context.WithCancel(req.Context())
					cancel()
					req = req.WithContext(ctx)
				} else {
					pp = mapParams{}
				}
				_ = adapter.ServeRoute(rt, w, req, pp, "/items/:id", func(w http.ResponseWriter, r *http.Request) error { h(w, r); return nil })
				if w.Code != 200 {
					t.Fatalf("%s probe: %d", probe, w.Code)
				}
				resumed := false
				for i := 0; i < 1200 && !resumed; i++ {
					if x := xc(serveOnce(rt, "/items/1", p, h)); x == "HIT" || x == "MISS" {
						resumed = true
					} else {
						time.Sleep(cool / 4)
					}
				}
				if !resumed {
					t.Fatalf("after a lost %s probe the breaker stays %s: caching never resumes", probe, c.Stats()["r"].Breaker)
				}
				// Open it again for the next case.
				srv.kill()
				serveOnce(rt, "/items/1", p, h)
				srv.start()
				time.Sleep(cool + 20*time.Millisecond)
			}
		})
	}
}

// (c) Corrupt, truncated and misplaced values written straight into the
// servers under live keys are misses, overwritten by the next fill, never
// a panic. (backend_redis_test.go and backend_memcache_test.go cover junk
// and truncated entries on the standalone servers; this adds an entry of
// another key copied under a live one, an oversized junk value, a junk
// counter, and the Redis cluster.)
func TestFaultCorruptValues(t *testing.T) {
	type kv = faultKV
	backends := map[string]func(t *testing.T) (string, func(c *core.Cache) kv){
		"redis": func(t *testing.T) (string, func(c *core.Cache) kv) {
			return redisURLs(t)["redis"], redisKV
		},
		"redis-cluster": func(t *testing.T) (string, func(c *core.Cache) kv) {
			return redisURLs(t)["cluster"], redisKV
		},
		"memcached": func(t *testing.T) (string, func(c *core.Cache) kv) {
			return mcURL(mcAddrs(t), ""), func(c *core.Cache) kv {
				mb := core.RegionBackend(c, "r").(*memcachebe.Backend)
				return kv{
					get: func(_ context.Context, k string) ([]byte, error) {
						it, err := mb.Client().Get(k)
						if err != nil {
							return nil, err
						}
						return it.Value, nil
					},
					set: func(_ context.Context, k string, v []byte) error {
						return mb.Client().Set(&memcache.Item{Key: k, Value: v})
					},
				}
			}
		},
	}
	for _, name := range []string{"redis", "redis-cluster", "memcached"} {
		t.Run(name, func(t *testing.T) {
			u, mk := backends[name](t)
			c := newBackendCache(t, u, core.RegionConfig{})
			kvs := mk(c)
			rt, _ := c.Route("r", core.Tags("item:{id}"))
			var calls atomic.Int64
			h := func(w http.ResponseWriter, req *http.Request) {
				fmt.Fprintf(w, "%s #%d", req.URL.Path, calls.Add(1))
			}
			ctx := context.Background()
			skeyOf := func(path, id string) string {
				return core.StorageKey(rt, newGet(path), mapParams{"id": id}, "/items/:id")
			}
			// Two live entries.
			serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)
			serveOnce(rt, "/items/2", mapParams{"id": "2"}, h)
			k1, k2 := skeyOf("/items/1", "1"), skeyOf("/items/2", "2")
			good2, err := kvs.get(ctx, k2)
			if err != nil {
				t.Fatalf("entry 2 not under its key: %v", err)
			}
			bads := map[string][]byte{
				"other key's entry": good2, // decodes, but its canonical key differs
				"oversized junk":    bytes.Repeat([]byte("RCE\x01"), 100<<10),
				"magic only":        []byte("RCE\x01"),
			}
			for _, what := range []string{"other key's entry", "oversized junk", "magic only"} {
				if err := kvs.set(ctx, k1, bads[what]); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				n := calls.Load()
				w := serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)
				want := fmt.Sprintf("/items/1 #%d", n+1)
				if xc(w) != "MISS" || w.Body.String() != want {
					t.Fatalf("%s: %q %q, want MISS %q", what, xc(w), w.Body.String(), want)
				}
				if w := serveOnce(rt, "/items/1", mapParams{"id": "1"}, h); xc(w) != "HIT" || w.Body.String() != want {
					t.Fatalf("%s: not overwritten: %q %q", what, xc(w), w.Body.String())
				}
			}
			// A junk value under a tag counter: the entry depending on it
			// is a miss, and the counter is repaired by the next fill
			// (memcached's create replaces it, Redis's ensure must too).
			if err := kvs.set(ctx, core.TagCounter(c, "r", "item:1"), []byte("not-a-number")); err != nil {
				t.Fatal(err)
			}
			n := calls.Load()
			w := serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)
			if w.Code != 200 || w.Body.String() != fmt.Sprintf("/items/1 #%d", n+1) {
				t.Fatalf("junk counter: %d %q %q", w.Code, xc(w), w.Body.String())
			}
			cached := false
			for i := 0; i < 3 && !cached; i++ {
				cached = xc(serveOnce(rt, "/items/1", mapParams{"id": "1"}, h)) == "HIT"
			}
			if !cached {
				t.Fatalf("a junk tag counter disables caching of its entries for good: stats %+v", c.Stats()["r"])
			}
			if err := c.InvalidateTags(ctx, "item:1"); err != nil {
				t.Fatalf("invalidation after a junk counter: %v", err)
			}
			if err := kvs.set(ctx, core.TagCounter(c, "r", "item:2"), []byte("junk")); err != nil {
				t.Fatal(err)
			}
			if err := c.InvalidateTags(ctx, "item:2"); err != nil {
				t.Fatalf("invalidating a tag whose counter holds junk: %v", err)
			}
			if w := serveOnce(rt, "/items/2", mapParams{"id": "2"}, h); xc(w) != "MISS" {
				t.Fatalf("entry 2 after its tag's invalidation: %q", xc(w))
			}
			st := c.Stats()["r"]
			if st.Corrupt < 2 {
				t.Fatalf("corrupt values not counted: %+v", st)
			}
		})
	}
}

// faultKV reads and writes raw values on a backend's server.
type faultKV struct {
	get func(ctx context.Context, key string) ([]byte, error)
	set func(ctx context.Context, key string, v []byte) error
}

func redisKV(c *core.Cache) faultKV {
	rb := core.RegionBackend(c, "r").(*redisbe.Backend)
	return faultKV{
		get: func(ctx context.Context, k string) ([]byte, error) { return rb.Client().Get(ctx, k).Bytes() },
		set: func(ctx context.Context, k string, v []byte) error { return rb.Client().Set(ctx, k, v, 0).Err() },
	}
}

// (d) A handler that panics or runs past FillTimeout while others wait
// for its fill: nothing is cached, and every waiter gets an answer at once:
// the fill's failure (a 500 after a panic, the handler's own 504, a plain
// 504 past FillTimeout), without calling the handler itself. After the
// key's failure memory, the next request fills.
func TestFaultHandlerFailureReleasesWaiters(t *testing.T) {
	for _, mode := range []string{"panic", "timeout", "timeout-ignored"} {
		t.Run(mode, func(t *testing.T) {
			c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {FillTimeout: time.Second}}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mw, err := c.Middleware("r")
			if err != nil {
				t.Fatal(err)
			}
			var calls atomic.Int64
			entered, release := make(chan struct{}), make(chan struct{})
			var releaseOnce sync.Once
			unblock := func() { releaseOnce.Do(func() { close(release) }) }
			mux := http.NewServeMux()
			mux.Handle("GET /items/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					close(entered)
					<-release
					switch mode {
					case "panic":
						panic("handler exploded")
					case "timeout":
						<-r.Context().Done() // honours the fill deadline
						w.WriteHeader(http.StatusGatewayTimeout)
						return
					case "timeout-ignored":
						// Ignores its context: blocks until the test ends.
						<-release
						fmt.Fprint(w, "very late")
						return
					}
				}
				fmt.Fprint(w, "ok")
			})))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			defer unblock() // before srv.Close, which waits for the handlers
			get := func() (int, string, error) {
				resp, err := srv.Client().Get(srv.URL + "/items/1")
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}
			type res struct {
				code int
				body string
				err  error
			}
			leader := make(chan res, 1)
			go func() { c, b, e := get(); leader <- res{c, b, e} }()
			<-entered
			const n = 10
			out := make(chan res, n)
			for i := 0; i < n; i++ {
				go func() { c, b, e := get(); out <- res{c, b, e} }()
			}
			waitUntil(t, "waiters to park on the fill", func() bool { return flightWaiters() == n })
			if mode != "timeout-ignored" {
				unblock()
			}
			want := map[string]res{
				"panic":           {code: 500, body: "Internal Server Error\n"},
				"timeout":         {code: 504},
				"timeout-ignored": {code: 504, body: "Gateway Timeout\n"},
			}[mode]
			for i := 0; i < n; i++ {
				select {
				case r := <-out:
					// A waiter whose own wait ran out before the leader's
					// 504 landed (a loaded machine) answers a plain 504: a
					// failure too, without calling the origin.
					lateTimeout := mode == "timeout" && r.body == "Gateway Timeout\n"
					if r.err != nil || r.code != want.code || r.body != want.body && !lateTimeout {
						t.Fatalf("waiter %d: %d %q %v, want %d %q", i, r.code, r.body, r.err, want.code, want.body)
					}
				case <-time.After(15 * time.Second): // failure bound only
					t.Fatalf("waiters not released (%d answered): a fill that outlives FillTimeout holds them", i)
				}
			}
			unblock()
			l := <-leader
			switch mode {
			case "panic":
				if l.err == nil {
					t.Fatalf("leader of a panicking handler got %d %q: the panic should reach net/http", l.code, l.body)
				}
			case "timeout":
				if l.err != nil || l.code != http.StatusGatewayTimeout {
					t.Fatalf("leader: %d %q %v", l.code, l.body, l.err)
				}
			}
			st := c.Stats()["r"]
			if st.Stores != 0 || calls.Load() != 1 {
				t.Fatalf("calls %d, stats %+v", calls.Load(), st)
			}
			// Nothing of the failure is cached: once the failure memory has
			// passed, the next request fills.
			waitUntil(t, "a request to fill after the failure memory", func() bool {
				code, body, err := get()
				if err != nil || code != 200 && code != want.code {
					t.Fatalf("after: %d %q %v", code, body, err)
				}
				return code == 200 && body == "ok"
			})
			if st := c.Stats()["r"]; st.Stores != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// dialCounter counts the connections a go-redis client opens: during a
// stall every attempt after a timeout needs a new one (the timed-out
// connection is discarded), so it counts attempts.
// dialCounter counts the connections go-redis opened (n) and its dial
// attempts (tries). An attempt made once the operation's deadline has
// passed fails at once without reaching the server: go-redis retries
// until the context is marked done, which a loaded machine may do late.
type dialCounter struct{ n, tries atomic.Int64 }

func (h *dialCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h.tries.Add(1)
		c, err := next(ctx, network, addr)
		if err == nil {
			h.n.Add(1)
		}
		return c, err
	}
}
func (h *dialCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *dialCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// The URL's timeout bounds a whole Redis operation: against a server that
// stopped answering, each operation makes one attempt and gives up, instead
// of go-redis retrying a timed-out pipeline max_retries (3) more times
// (about five times the timeout per operation, measured 545ms for 100ms).
// Attempts are counted by the connections opened, not timed: an attempt
// reaches the server only on a connection opened before the deadline, and
// the first attempt holds it until then. (go-redis may still try to dial
// past the deadline while the context's cancellation waits for a CPU;
// such a dial fails at once, and is logged, not counted.)
func TestFaultRedisTimeoutBoundsEachOperation(t *testing.T) {
	srv := startRedisProc(t)
	if !srv.debug {
		t.Skip("redis-server < 7: DEBUG cannot be enabled from the command line")
	}
	be, err := core.OpenBackend("redis://"+srv.addr()+"/0?timeout=100ms", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	rb := be.(*redisbe.Backend)
	dials := &dialCounter{}
	rb.Client().AddHook(dials)
	ctx := context.Background()
	if _, err := rb.Load(ctx, "k", []string{"a"}, []uint64{0}); err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		run  func() error
	}{
		{"load", func() error { _, err := rb.Load(ctx, "k", []string{"a", "b"}, make([]uint64, 2)); return err }},
		{"counters", func() error { return rb.Counters(ctx, []string{"a", "b"}, make([]uint64, 2)) }},
		{"ensure", func() error { return rb.Ensure(ctx, []string{"a", "b"}, make([]uint64, 2)) }},
		{"bump", func() error { return rb.Bump(ctx, "a") }},
		{"store", func() error { return rb.Store(ctx, "k", sampleEntry(), time.Minute) }},
	}
	conn, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Long enough for the five operations however slow the machine is;
	// the server is killed (SIGKILL) at cleanup.
	fmt.Fprint(conn, "DEBUG SLEEP 120\r\n")
	waitStalled(t, srv.addr())
	for _, op := range ops {
		d0, t0 := dials.n.Load(), dials.tries.Load()
		start := time.Now()
		err := op.run()
		took := time.Since(start)
		n := dials.n.Load() - d0
		t.Logf("%s against a stalled server: %v after %v, %d connections opened (%d dial attempts)", op.name, err, took.Round(time.Millisecond), n, dials.tries.Load()-t0)
		if err == nil {
			t.Fatalf("%s succeeded against a stalled server", op.name)
		}
		if n > 1 {
			t.Errorf("%s: %d reconnections (retries) against a stalled server; the timeout should bound the operation", op.name, n)
		}
	}
}

// waitStalled returns once the Redis server at addr has stopped answering
// (a DEBUG SLEEP sent on another connection has begun): a PING on a fresh
// connection gets no answer in 500ms. An answer means the server has not
// taken the DEBUG SLEEP yet.
func waitStalled(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, "the server to stall", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := io.WriteString(c, "PING\r\n"); err != nil {
			t.Fatal(err)
		}
		_, err = bufio.NewReader(c).ReadString('\n')
		return err != nil
	})
}

// After a restart, caching resumes at the first breaker probe: the
// connections pooled before the crash are all dead, and if each had to
// fail one probe in turn (one per cooldown), a busy process would wait
// about max_idle cooldowns before caching again. Counted in probes.
func TestFaultRestartResumesAtFirstProbe(t *testing.T) {
	for _, fb := range faultBackends {
		t.Run(fb.name, func(t *testing.T) {
			srv := fb.start(t)
			cool := 50 * time.Millisecond
			c, err := core.New(core.Config{
				Regions: map[string]core.RegionConfig{"r": {Backend: fb.url(srv.addr()), Prefix: uniquePrefix(t)}},
				Breaker: core.BreakerConfig{Failures: 1, Cooldown: cool},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rt, _ := c.Route("r")
			h := func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(5 * time.Millisecond) // keep connections busy at once
				fmt.Fprint(w, "ok")
			}
			// Concurrent requests leave several connections in the pool.
			var wg sync.WaitGroup
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					serveOnce(rt, fmt.Sprintf("/items/%d", i%8), noParams, h)
				}(i)
			}
			wg.Wait()
			srv.kill()
			serveOnce(rt, "/items/1", noParams, h) // fails: the breaker opens
			if st := c.Stats()["r"]; st.Breaker != core.BreakerOpen {
				t.Fatalf("breaker %s after a failure", st.Breaker)
			}
			srv.start()
			failedProbes := 0
			for i := 0; i < 40; i++ {
				time.Sleep(cool + 10*time.Millisecond)
				opens := c.Stats()["r"].BreakerOpens
				x := xc(serveOnce(rt, "/items/1", noParams, h))
				if x == "HIT" || x == "MISS" {
					break
				}
				if c.Stats()["r"].BreakerOpens > opens {
					failedProbes++
				}
			}
			t.Logf("%s: %d probes failed after the restart", fb.name, failedProbes)
			if failedProbes > 0 {
				t.Fatalf("%d probes failed on connections left from before the restart", failedProbes)
			}
			if w := serveOnce(rt, "/items/1", noParams, h); xc(w) != "HIT" && xc(w) != "MISS" {
				t.Fatalf("caching did not resume: %q", xc(w))
			}
		})
	}
}
