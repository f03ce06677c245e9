package core

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	"github.com/routecache/routecache/core/backend/near"
	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// Session 9 review: attacks on the near cache's vouched key-alone hits
// (58a7d68), its local reads of runtime tags (af480b6), the waiter and
// shared-key rules (5e2f0c6) and the refusal rule of execErr (a1197d3).
// Each test states the promise it guards.

// s9Env is two instances on one Redis and one prefix: A reads Redis
// directly (its fills see every invalidation at once), B has a near cache.
type s9Env struct {
	t       *testing.T
	a, b    *Cache
	nb      *near.Cache
	applied chan string
	admin   *redis.Client
	name    string // B's connections' client name
}

func s9Open(t *testing.T, url, prefix string, soft bool) *Cache {
	t.Helper()
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {Backend: url, Prefix: prefix, TTL: time.Hour, SoftInvalidation: soft}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func s9NewEnv(t *testing.T, soft bool) *s9Env { return s9NewEnvOn(t, soft, false) }

// s9NewEnvOn is s9NewEnv on the test cluster when cluster is set.
func s9NewEnvOn(t *testing.T, soft, cluster bool) *s9Env {
	url, addr := "", ""
	if cluster {
		addrs := backendtest.Server(t, "ROUTECACHE_TEST_REDIS_CLUSTER")
		url, addr = "redis+cluster://"+addrs+"?timeout=5s", strings.Split(addrs, ",")[0]
	} else {
		addr = backendtest.Server(t, "ROUTECACHE_TEST_REDIS")
		url = "redis://" + addr + "/0?timeout=5s"
	}
	prefix := fmt.Sprintf("s9%d", backend.FreshCounter()%1e12)
	env := &s9Env{t: t, applied: make(chan string, 256), name: "rc-s9-b-" + prefix}
	env.a = s9Open(t, url, prefix, soft)
	env.b = s9Open(t, url+"&near_max_bytes=4MiB&client_name="+env.name, prefix, soft)
	env.nb = env.b.regions["r"].near
	if env.nb == nil {
		t.Fatal("B has no near cache")
	}
	s9WaitFor(t, "B to subscribe", func() bool { return env.nb.Stats().Coherent })
	env.nb.OnApplied(func(counter string) {
		select {
		case env.applied <- counter:
		default:
		}
	})
	env.admin = redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { env.admin.Close() })
	return env
}

// s9WaitFor polls cond until it holds (an event: a subscription state, a
// count), failing after a generous deadline.
func s9WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func s9Route(t *testing.T, c *Cache, tags ...string) *Route {
	t.Helper()
	rt, err := c.Route("r", Tags(tags...))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// s9Serve serves GET /items/{id} on rt; the handler writes body and adds
// the runtime tags.
func s9Serve(t *testing.T, rt *Route, id, body string, runtime ...string) *httptest.ResponseRecorder {
	t.Helper()
	return s9ServeP(t, rt, mapParams{"id": id}, body, runtime...)
}

// s9ServeP is s9Serve with the route parameters p (p["id"] the item).
func s9ServeP(t *testing.T, rt *Route, p mapParams, body string, runtime ...string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	err := rt.handle(w, httptest.NewRequest("GET", "/items/"+p["id"], nil), p, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		if len(runtime) > 0 {
			AddTags(r.Context(), runtime...)
		}
		_, err := io.WriteString(w, body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// s9Fast reports whether rt answers GET /items/{id} from its key alone.
func s9Fast(t *testing.T, rt *Route, id string) bool {
	t.Helper()
	req := httptest.NewRequest("GET", "/items/"+id, nil)
	var buf [stackKeyBytes]byte
	k, ok := rt.appendStackKey(buf[:0], req, "/items/:id")
	if !ok {
		t.Fatal("the key is not built on the stack")
	}
	e, _, _ := rt.keyedHit(string(k))
	return e != nil
}

// waitApplied waits until B applied the message invalidating tag.
func (env *s9Env) waitApplied(tag string) {
	env.t.Helper()
	counter := env.b.regions["r"].tagCounter(tag)
	for deadline := time.After(30 * time.Second); ; {
		select {
		case c := <-env.applied:
			if c == counter {
				return
			}
		case <-deadline:
			env.t.Fatalf("B never applied the invalidation of %s", tag)
		}
	}
}

// hits serves rt at B n times, each of which must be a hit on want.
func (env *s9Env) hits(step string, rt *Route, id, want string, n int, runtime ...string) {
	env.t.Helper()
	for i := 0; i < n; i++ {
		if w := s9Serve(env.t, rt, id, "B's own", runtime...); xcache(w) != "HIT" || w.Body.String() != want {
			env.t.Fatalf("%s: B's hit %d: %q %q, want HIT %q", step, i, xcache(w), w.Body.String(), want)
		}
	}
}

// notOld serves rt at B and fails if it answers old (an answer from
// before an invalidation that completed, or was applied, before).
func (env *s9Env) notOld(step string, rt *Route, id, old string, runtime ...string) {
	env.t.Helper()
	if w := s9Serve(env.t, rt, id, "B's fresh", runtime...); w.Body.String() == old {
		env.t.Fatalf("%s: B answered %q %q, from before the invalidation", step, xcache(w), w.Body.String())
	}
}

// Attack: an entry another instance stored with runtime tags (AddTags),
// hit at B by a route whose declared names it starts with (so the hit
// vouches for the route), and whose runtime tag's counter B then reads
// from its local copy (ReadLocal). An invalidation of the runtime tag made
// by A ends B's hits once its message was applied; one made by B, at once.
func TestReviewS9VouchedEntryWithRuntimeTagEndsOnInvalidation(t *testing.T) {
	t.Run("redis", func(t *testing.T) { s9VouchedRuntime(t, false) })
	t.Run("cluster", func(t *testing.T) { s9VouchedRuntime(t, true) })
}

func s9VouchedRuntime(t *testing.T, cluster bool) {
	env := s9NewEnvOn(t, false, cluster)
	rta, rtb := s9Route(t, env.a, "item:{id}"), s9Route(t, env.b, "item:{id}")
	if w := s9Serve(t, rta, "1", "v0", "owner:1"); xcache(w) != "MISS" {
		t.Fatalf("A's fill: %q", xcache(w))
	}
	env.hits("before", rtb, "1", "v0", 4, "owner:1")
	before := env.nb.Stats().RemoteCounterReads
	env.hits("local runtime read", rtb, "1", "v0", 3, "owner:1")
	if got := env.nb.Stats().RemoteCounterReads; got != before {
		t.Fatalf("B's hits read the runtime tag remotely (%d -> %d): ReadLocal not exercised", before, got)
	}
	if err := env.a.InvalidateTags(context.Background(), "owner:1"); err != nil {
		t.Fatal(err)
	}
	env.waitApplied("owner:1")
	env.notOld("A invalidated the runtime tag", rtb, "1", "v0", "owner:1")

	// Another key (B's refill above holds /items/1), another runtime tag.
	if w := s9Serve(t, rta, "2", "v1", "owner:2"); w.Body.String() != "v1" {
		t.Fatalf("A's second fill: %q %q", xcache(w), w.Body.String())
	}
	env.hits("before B's own invalidation", rtb, "2", "v1", 4, "owner:2")
	if err := env.b.InvalidateTags(context.Background(), "owner:2"); err != nil {
		t.Fatal(err)
	}
	env.notOld("B invalidated the runtime tag", rtb, "2", "v1", "owner:2")
}

// Attack: a route vouched for an entry A stored; a twin route at B with
// identical names is not vouched (it answers by the general way, right);
// a route with other tags sharing the key replaces the L1 entry with its
// own, after which the vouched route may not take that entry by its key;
// and an invalidation A made ends every route's hits once applied.
func TestReviewS9VouchTwinRouteAndReplacement(t *testing.T) {
	env := s9NewEnv(t, false)
	rta := s9Route(t, env.a, "item:{id}")
	rt1, rt2, rt3 := s9Route(t, env.b, "item:{id}"), s9Route(t, env.b, "item:{id}"), s9Route(t, env.b, "other:{id}")
	if w := s9Serve(t, rta, "1", "v0"); xcache(w) != "MISS" {
		t.Fatalf("A's fill: %q", xcache(w))
	}
	env.hits("rt1 warms", rt1, "1", "v0", 3)
	if !s9Fast(t, rt1, "1") {
		t.Fatal("rt1 was not vouched for A's entry")
	}
	if s9Fast(t, rt2, "1") || s9Fast(t, rt3, "1") {
		t.Fatal("a route the hit did not vouch for takes A's entry by its key alone")
	}
	env.hits("twin", rt2, "1", "v0", 2)
	// rt3 shares the key but not the tags: its own fill replaces the L1
	// entry (Producer rt3).
	if w := s9Serve(t, rt3, "1", "rt3's"); xcache(w) != "MISS" || w.Body.String() != "rt3's" {
		t.Fatalf("rt3 on A's entry: %q %q, want its own MISS", xcache(w), w.Body.String())
	}
	if s9Fast(t, rt1, "1") {
		t.Fatal("rt1 takes rt3's entry (other tags) by its key alone after the replacement")
	}
	if w := s9Serve(t, rt1, "1", "rt1's"); w.Body.String() == "rt3's" {
		t.Fatalf("rt1 answered rt3's entry %q: rt3 never read item:1", xcache(w))
	}
	// Whatever the L1 now holds, an invalidation of item:1 by A ends it.
	if w := s9Serve(t, rta, "1", "v1"); w.Body.String() == "" {
		t.Fatal("A's refill")
	}
	for _, rt := range []*Route{rt1, rt2} {
		s9Serve(t, rt, "1", "x")
		s9Serve(t, rt, "1", "x")
	}
	held := map[*Route]string{}
	for _, rt := range []*Route{rt1, rt2} {
		held[rt] = s9Serve(t, rt, "1", "x").Body.String()
	}
	if err := env.a.InvalidateTags(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	env.waitApplied("item:1")
	for i, rt := range []*Route{rt1, rt2} {
		env.notOld(fmt.Sprintf("rt%d after A's invalidation", i+1), rt, "1", held[rt])
	}
}

// Attack: B's pub/sub subscription is cut (CLIENT KILL TYPE pubsub) while
// it answers a vouched entry by its key alone and another entry's runtime
// tag from its local copy; A invalidates both while B cannot hear it. Once
// B resubscribed, neither old answer may be served.
func TestReviewS9PubSubCutWhileVouchedAndRuntimeLocal(t *testing.T) {
	env := s9NewEnv(t, false)
	rta, rtb := s9Route(t, env.a, "item:{id}"), s9Route(t, env.b, "item:{id}")
	s9Serve(t, rta, "1", "one-v0")
	s9Serve(t, rta, "2", "two-v0", "owner:2")
	env.hits("warm 2", rtb, "2", "two-v0", 3, "owner:2")
	env.hits("warm 1", rtb, "1", "one-v0", 3)
	if !s9Fast(t, rtb, "1") {
		t.Fatal("B not vouched")
	}
	resubs := env.nb.Stats().Resubscribes
	env.killPubSub()
	if err := env.a.InvalidateTags(context.Background(), "item:1", "owner:2"); err != nil {
		t.Fatal(err)
	}
	s9WaitFor(t, "B to resubscribe", func() bool {
		st := env.nb.Stats()
		return st.Resubscribes > resubs && st.Coherent
	})
	if s9Fast(t, rtb, "1") {
		t.Fatal("after the resubscription, B answers its vouched entry by its key alone")
	}
	env.notOld("declared tag invalidated during the cut", rtb, "1", "one-v0")
	env.notOld("runtime tag invalidated during the cut", rtb, "2", "two-v0", "owner:2")
}

// killPubSub closes B's pub/sub connection on the server (by its client
// name: other tests' subscribers are left alone).
func (env *s9Env) killPubSub() {
	env.t.Helper()
	ctx := context.Background()
	list, err := env.admin.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		env.t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+env.name+" ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		if err := env.admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			env.t.Fatal(err)
		}
		killed++
	}
	if killed == 0 {
		env.t.Fatalf("no pub/sub connection named %s in %q", env.name, list)
	}
}

// Attack: soft invalidation of a vouched entry's tag by A. Once applied,
// B may answer the old entry only as STALE (and refresh), never as a HIT
// from its key alone.
func TestReviewS9SoftInvalidationEndsVouchedHits(t *testing.T) {
	env := s9NewEnv(t, true)
	rta, rtb := s9Route(t, env.a, "item:{id}"), s9Route(t, env.b, "item:{id}")
	s9Serve(t, rta, "1", "v0")
	env.hits("warm", rtb, "1", "v0", 3)
	if !s9Fast(t, rtb, "1") {
		t.Fatal("B not vouched")
	}
	if err := env.a.InvalidateTagsSoft(context.Background(), "item:1"); err != nil {
		t.Fatal(err)
	}
	env.waitApplied("item:1")
	if s9Fast(t, rtb, "1") {
		t.Fatal("a soft invalidation was applied, yet B answers by its key alone")
	}
	if w := s9Serve(t, rtb, "1", "B's"); w.Body.String() == "v0" && xcache(w) != "STALE" {
		t.Fatalf("after a soft invalidation: %q %q, want no fresh HIT on v0", xcache(w), w.Body.String())
	}
}

// Attack: a Memcached near cache reads a runtime tag's counter from its
// local copy (ReadLocal, within near_staleness). B's own invalidation
// ends its hits at once whatever the staleness bound; A's, once the bound
// passed since it completed (the documented limit: Memcached has no
// pub/sub).
func TestReviewS9MemcacheNearRuntimeTagStaleness(t *testing.T) {
	addrs := backendtest.Server(t, "ROUTECACHE_TEST_MEMCACHE")
	prefix := fmt.Sprintf("s9%d", backend.FreshCounter()%1e12)
	const staleness = 200 * time.Millisecond
	a := s9Open(t, "memcache://"+addrs+"?timeout=5s", prefix, false)
	b := s9Open(t, "memcache://"+addrs+"?timeout=5s&near_max_bytes=4MiB&near_staleness="+staleness.String(), prefix, false)
	nb := b.regions["r"].near
	if nb == nil {
		t.Fatal("B has no near cache")
	}
	env := &s9Env{t: t, a: a, b: b, nb: nb}
	rta, rtb := s9Route(t, a, "item:{id}"), s9Route(t, b, "item:{id}")
	s9Serve(t, rta, "1", "v0", "owner:1")
	env.hits("warm", rtb, "1", "v0", 2, "owner:1")
	if err := b.InvalidateTags(context.Background(), "owner:1"); err != nil {
		t.Fatal(err)
	}
	env.notOld("B's own invalidation", rtb, "1", "v0", "owner:1")

	// Another key (B's refill above holds /items/1), another runtime tag.
	s9Serve(t, rta, "2", "v1", "owner:2")
	env.hits("warm 2", rtb, "2", "v1", 2, "owner:2")
	if err := a.InvalidateTags(context.Background(), "owner:2"); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	// The bound itself is what is tested: wait it out past A's invalidation.
	time.Sleep(time.Until(done.Add(staleness + 10*time.Millisecond)))
	env.notOld("A's invalidation, staleness bound passed", rtb, "2", "v1", "owner:2")
}

// Attack on execErr: a server that answers every command with an error
// reply naming the command (the user may no longer run GETRANGE: taken
// away while connections were open) refuses this process as much as a
// wrong password does: the breaker opens after Failures requests. On one
// node (on the lean path's open connections) and on a cluster.
func TestReviewS9BreakerOpensOnCommandRefusal(t *testing.T) {
	for _, srv := range []struct{ name, env, scheme string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://%s@%s/0?timeout=2s"},
		{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://%s@%s?timeout=2s"},
	} {
		t.Run(srv.name, func(t *testing.T) {
			addrs := backendtest.Server(t, srv.env)
			user := fmt.Sprintf("rc-s9-%d", time.Now().UnixNano())
			for _, a := range strings.Split(addrs, ",") {
				admin := redis.NewClient(&redis.Options{Addr: a})
				t.Cleanup(func() {
					admin.Do(context.Background(), "ACL", "DELUSER", user)
					admin.Close()
				})
				if err := admin.Do(context.Background(), "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all").Err(); err != nil {
					t.Fatal(err)
				}
			}
			// refuse takes GETRANGE away from the user, on connections
			// already open too.
			refuse := func() {
				for _, a := range strings.Split(addrs, ",") {
					admin := redis.NewClient(&redis.Options{Addr: a})
					err := admin.Do(context.Background(), "ACL", "SETUSER", user, "-getrange").Err()
					admin.Close()
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			c, err := New(Config{
				Regions: map[string]RegionConfig{"r": {Backend: fmt.Sprintf(srv.scheme, user+":pw", addrs), Prefix: fmt.Sprintf("s9%d", backend.FreshCounter()%1e12)}},
				Breaker: BreakerConfig{Failures: 3, Cooldown: time.Hour},
				Logger:  quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			rt := s9Route(t, c, "item:{id}")
			// Served while allowed: the lean path's connections are open
			// when the refusal comes.
			rb, _ := c.regions["r"].be.(*redisbe.Backend)
			s9WaitFor(t, "hits while allowed (on the lean path on one node)", func() bool {
				w := s9Serve(t, rt, "1", "allowed")
				return xcache(w) == "HIT" && (srv.name != "redis" || rb.LeanLoads() > 0)
			})
			lean := uint64(0)
			if rb != nil {
				lean = rb.LeanLoads()
			}
			refuse()
			n := 0
			for ; n < 30 && c.Stats()["r"].Breaker != BreakerOpen; n++ {
				if w := s9Serve(t, rt, "1", fmt.Sprint("origin ", n)); w.Body.String() != fmt.Sprint("origin ", n) {
					t.Fatalf("request %d: %q %q, want the handler's", n, xcache(w), w.Body.String())
				}
			}
			if st := c.Stats()["r"]; st.Breaker != BreakerOpen {
				t.Fatalf("after %d requests refused GETRANGE: breaker %s; stats %+v", n, st.Breaker, st)
			}
			if srv.name == "redis" && rb.LeanLoads() == lean {
				t.Fatal("no refused Load took the lean path: its rule was not exercised")
			}
			if n > 3 {
				t.Errorf("the breaker opened after %d refused requests, want 3", n)
			}
		})
	}
}

// Attack on execErr: per-key problems never open the breaker: a key of
// another type under the entry's key and under a counter, and a value too
// long to be a counter. 30 requests with Failures 3; on one node (lean
// path) and on a cluster.
func TestReviewS9PerKeyProblemsKeepBreakerClosed(t *testing.T) {
	for _, srv := range []struct{ name, env, scheme string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://%s/0?timeout=2s"},
		{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://%s?timeout=2s"},
	} {
		t.Run(srv.name, func(t *testing.T) {
			addrs := backendtest.Server(t, srv.env)
			c, err := New(Config{
				Regions: map[string]RegionConfig{"r": {Backend: fmt.Sprintf(srv.scheme, addrs), Prefix: fmt.Sprintf("s9%d", backend.FreshCounter()%1e12)}},
				Breaker: BreakerConfig{Failures: 3, Cooldown: time.Hour},
				Logger:  quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var uc redis.UniversalClient
			if srv.name == "cluster" {
				uc = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
			} else {
				uc = redis.NewClient(&redis.Options{Addr: addrs})
			}
			t.Cleanup(func() { uc.Close() })
			rt := s9Route(t, c, "item:{id}")
			ctx := context.Background()
			reg := c.regions["r"]
			tag := reg.tagCounter("item:1")
			// The entry's remote key, as a near-less Redis region stores it.
			s9Serve(t, rt, "1", "first")
			keys, err := s9Keys(ctx, uc, reg.cfg.Prefix)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if k == tag {
					continue
				}
				typ, _ := uc.Type(ctx, k).Result()
				if typ != "string" {
					continue
				}
				// Every string key of the region but the tag's counter: the
				// entry, the key's and region's counters become lists.
				if err := uc.Del(ctx, k).Err(); err != nil {
					t.Fatal(err)
				}
				if err := uc.RPush(ctx, k, "x").Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := uc.Set(ctx, tag, strings.Repeat("9", 4096), 0).Err(); err != nil {
				t.Fatal(err)
			}
			for n := 0; n < 30; n++ {
				w := s9Serve(t, rt, "1", fmt.Sprint("v", n))
				if w.Body.String() != fmt.Sprint("v", n) && xcache(w) != "HIT" {
					t.Fatalf("request %d: %q %q", n, xcache(w), w.Body.String())
				}
				if st := c.Stats()["r"]; st.Breaker == BreakerOpen {
					t.Fatalf("request %d: the breaker opened on per-key problems; stats %+v", n, st)
				}
				if n == 10 { // and again, after the repairs
					if err := uc.Set(ctx, tag, strings.Repeat("9", 4096), 0).Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// s9Keys lists the keys holding prefix (SCAN on every master).
func s9Keys(ctx context.Context, uc redis.UniversalClient, prefix string) ([]string, error) {
	var out []string
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, "*"+prefix+"*", 1000).Iterator()
		for it.Next(ctx) {
			out = append(out, it.Val())
		}
		return it.Err()
	}
	if cc, ok := uc.(*redis.ClusterClient); ok {
		var mu = make(chan struct{}, 1)
		mu <- struct{}{}
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			<-mu
			defer func() { mu <- struct{}{} }()
			return scan(ctx, c)
		})
		return out, err
	}
	return out, scan(ctx, uc.(*redis.Client))
}

// Attack: races. B's readers hit two keys (one answered by its key alone
// once vouched, one with a runtime tag read locally) while A refills them
// and invalidations alternate between A (waited for until B applied them)
// and B (complete when they return); L1 replacements, vouches and local
// counter drops interleave. No request that began after an invalidation
// completed (here, or applied from A) answers a body produced before it.
func TestReviewS9StressVouchAndRuntimeLocal(t *testing.T) {
	t.Run("redis", func(t *testing.T) { s9Stress(t, false) })
	t.Run("cluster", func(t *testing.T) { s9Stress(t, true) })
}

func s9Stress(t *testing.T, cluster bool) {
	env := s9NewEnvOn(t, false, cluster)
	rta, rtb := s9Route(t, env.a, "item:{id}"), s9Route(t, env.b, "item:{id}")
	var version atomic.Int64
	floors := map[string]*atomic.Int64{"1": new(atomic.Int64), "2": new(atomic.Int64)}
	handler := func(rt *Route, id string) *httptest.ResponseRecorder {
		var runtime []string
		if id == "2" {
			runtime = []string{"owner:2"}
		}
		w := httptest.NewRecorder()
		err := rt.handle(w, httptest.NewRequest("GET", "/items/"+id, nil), mapParams{"id": id}, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
			AddTags(r.Context(), runtime...)
			_, err := fmt.Fprint(w, version.Load())
			return err
		})
		if err != nil {
			t.Error(err)
		}
		return w
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Bool
	reader := func(rt *Route, id string) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			min := floors[id].Load()
			w := handler(rt, id)
			got, err := strconv.ParseInt(w.Body.String(), 10, 64)
			if err != nil || got < min {
				if !failed.Swap(true) {
					t.Errorf("/items/%s: %s %q, began after the invalidation of version %d completed", id, xcache(w), w.Body.String(), min-1)
				}
				return
			}
		}
	}
	for i := 0; i < 3; i++ {
		wg.Add(2)
		go reader(rtb, "1")
		go reader(rtb, "2")
	}
	wg.Add(2)
	go reader(rta, "1")
	go reader(rta, "2")
	ctx := context.Background()
	for round := 0; round < 150 && !failed.Load(); round++ {
		tag := []string{"item:1", "owner:2", "item:2"}[round%3]
		v := version.Add(1)
		if round%2 == 0 {
			if err := env.a.InvalidateTags(ctx, tag); err != nil {
				t.Fatal(err)
			}
			env.waitApplied(tag)
		} else {
			if err := env.b.InvalidateTags(ctx, tag); err != nil {
				t.Fatal(err)
			}
			floors[map[bool]string{true: "1", false: "2"}[tag == "item:1"]].Store(v) // complete here
			// B hears its own message too: wait for it, so that a later
			// wait for A's message on this tag is not answered by it.
			env.waitApplied(tag)
		}
		// The invalidation completed (applied at B): no request to the key
		// the tag covers, beginning now, may answer a body from before it.
		if tag == "item:1" {
			floors["1"].Store(v)
		} else {
			floors["2"].Store(v)
		}
	}
	close(stop)
	wg.Wait()
}

// Attack: the scripts (bump, soft mark) are flushed from the server's
// script cache (SCRIPT FLUSH; as after a restart): EVALSHA answers
// NOSCRIPT. Invalidations, hard and soft, still complete, end the hits at
// B and at A, and open no breaker. On one node and on a cluster.
func TestReviewS9ScriptFlushInvalidationsComplete(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "redis", true: "cluster"}[cluster], func(t *testing.T) {
			env := s9NewEnvOn(t, true, cluster)
			rta, rtb := s9Route(t, env.a, "item:{id}"), s9Route(t, env.b, "item:{id}")
			flush := func() {
				t.Helper()
				addrs := []string{env.admin.Options().Addr}
				if cluster {
					addrs = strings.Split(backendtest.Server(t, "ROUTECACHE_TEST_REDIS_CLUSTER"), ",")
				}
				for _, a := range addrs {
					c := redis.NewClient(&redis.Options{Addr: a})
					err := c.ScriptFlush(context.Background()).Err()
					c.Close()
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			ctx := context.Background()
			for round, inv := range []struct {
				by   *Cache
				soft bool
			}{{env.b, false}, {env.a, false}, {env.b, true}, {env.a, true}} {
				old := fmt.Sprint("v", round)
				s9Serve(t, rta, "1", old)
				env.hits(fmt.Sprint("round ", round), rtb, "1", old, 3)
				flush()
				var err error
				if inv.soft {
					err = inv.by.InvalidateTagsSoft(ctx, "item:1")
				} else {
					err = inv.by.InvalidateTags(ctx, "item:1")
				}
				if err != nil {
					t.Fatalf("round %d: the invalidation after SCRIPT FLUSH failed: %v", round, err)
				}
				env.waitApplied("item:1")
				for _, rt := range []*Route{rta, rtb} {
					w := s9Serve(t, rt, "1", fmt.Sprint("v", round+1))
					if w.Body.String() == old && !(inv.soft && xcache(w) == "STALE") {
						t.Fatalf("round %d: %q %q after the invalidation completed", round, xcache(w), w.Body.String())
					}
				}
				for _, c := range []*Cache{env.a, env.b} {
					if st := c.Stats()["r"]; st.Breaker != BreakerClosed {
						t.Fatalf("round %d: breaker %s after NOSCRIPT", round, st.Breaker)
					}
				}
				// Let a soft round's refresh land before the next round.
				s9WaitFor(t, "the refill", func() bool {
					w := s9Serve(t, rta, "1", fmt.Sprint("v", round+1))
					return w.Body.String() != old
				})
			}
		})
	}
}
