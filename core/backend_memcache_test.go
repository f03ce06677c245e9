package core_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	memcachebe "github.com/routecache/routecache/core/backend/memcache"

	"github.com/routecache/routecache/core/backend"

	"github.com/bradfitz/gomemcache/memcache"
)

// Every test below runs against the real memcached servers that the test
// command starts (ROUTECACHE_TEST_MEMCACHE=host:port,host:port): no mocks.
// Keys are namespaced by a random prefix; nothing is ever flushed.

func mcPrefix() string { return fmt.Sprintf("mc%d", backend.FreshCounter()%1e12) }

func mcOpen(t testing.TB, raw string) *memcachebe.Backend {
	t.Helper()
	be, err := core.OpenBackend(raw, backend.Options{Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be.(*memcachebe.Backend)
}

func mcCache(t testing.TB, raw string, rc core.RegionConfig) *core.Cache {
	t.Helper()
	rc.Backend = raw
	if rc.Prefix == "" {
		rc.Prefix = mcPrefix()
	}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMemcacheURL(t *testing.T) {
	good := []struct {
		raw     string
		timeout time.Duration
		idle    int
		item    int
	}{
		{"memcache://127.0.0.1:11211", 100 * time.Millisecond, 64, 1 << 20},
		{"memcache://127.0.0.1:11211/", 100 * time.Millisecond, 64, 1 << 20},
		{"memcache://127.0.0.1:1,localhost:2?timeout=2s&max_idle=8", 2 * time.Second, 8, 1 << 20},
		{"memcache://[::1]:11211", 100 * time.Millisecond, 64, 1 << 20},
		{"memcache://127.0.0.1:11211?max_item=8MiB", 100 * time.Millisecond, 64, 8 << 20},
	}
	for _, g := range good {
		be, err := core.OpenBackend(g.raw, backend.Options{Logger: slog.Default()})
		if err != nil {
			t.Errorf("%s: %v", g.raw, err)
			continue
		}
		mb := be.(*memcachebe.Backend)
		if mb.Client().Timeout != g.timeout || mb.Client().MaxIdleConns != g.idle || mb.MaxItem() != g.item {
			t.Errorf("%s: timeout %v max_idle %d max_item %d", g.raw, mb.Client().Timeout, mb.Client().MaxIdleConns, mb.MaxItem())
		}
		if !mb.Remote() {
			t.Errorf("%s: not remote", g.raw)
		}
		be.Close()
	}

	bad := map[string]string{
		"memcache://":                                 `backend "memcache://": no server (want memcache://host:port[,host:port...])`, // quoted as written
		"memcache:127.0.0.1:11211":                    `backend "memcache:127.0.0.1:11211": no server (want memcache://host:port[,host:port...])`,
		"memcache://127.0.0.1":                        `backend "memcache://127.0.0.1": bad host "127.0.0.1" (want host:port)`,
		"memcache://:11211":                           `backend "memcache://:11211": bad host ":11211" (want host:port)`,
		"memcache://127.0.0.1:1,,127.0.0.1:2":         `backend "memcache://127.0.0.1:1,,127.0.0.1:2": bad host "" (want host:port)`,
		"memcache://h:x,127.0.0.1:11211":              `backend "memcache://h:x,127.0.0.1:11211": bad port in "h:x" (want 1-65535)`,
		"memcache://127.0.0.1:0":                      `backend "memcache://127.0.0.1:0": bad port in "127.0.0.1:0" (want 1-65535)`,
		"memcache://127.0.0.1:70000":                  `backend "memcache://127.0.0.1:70000": bad port in "127.0.0.1:70000" (want 1-65535)`,
		"memcache://u:secret@127.0.0.1:11211":         `backend "memcache://u:xxxxx@127.0.0.1:11211": memcache:// takes no user or password`,
		"memcache://127.0.0.1:11211/0":                `backend "memcache://127.0.0.1:11211/0": memcache:// takes no path (got "/0")`,
		"memcache://127.0.0.1:1?timeout=fast":         `backend "memcache://127.0.0.1:1?timeout=fast": timeout: bad duration "fast" (want e.g. 100ms)`,
		"memcache://127.0.0.1:1?timeout=0s":           `backend "memcache://127.0.0.1:1?timeout=0s": timeout: bad duration "0s" (want e.g. 100ms)`,
		"memcache://127.0.0.1:1?timeout=-1s":          `backend "memcache://127.0.0.1:1?timeout=-1s": timeout: bad duration "-1s" (want e.g. 100ms)`,
		"memcache://127.0.0.1:1?timeout=":             `backend "memcache://127.0.0.1:1?timeout=": timeout: bad duration "" (want e.g. 100ms)`,
		"memcache://127.0.0.1:1?max_idle=0":           `backend "memcache://127.0.0.1:1?max_idle=0": max_idle: bad value "0" (want a positive integer)`,
		"memcache://127.0.0.1:1?max_idle=many":        `backend "memcache://127.0.0.1:1?max_idle=many": max_idle: bad value "many" (want a positive integer)`,
		"memcache://127.0.0.1:1?max_item=big":         `backend "memcache://127.0.0.1:1?max_item=big": max_item: bad size "big" (want memcached's -I value, e.g. 1MiB)`,
		"memcache://127.0.0.1:1?max_item=4GiB":        `backend "memcache://127.0.0.1:1?max_item=4GiB": max_item: bad size "4GiB" (want memcached's -I value, e.g. 1MiB)`,
		"memcache://127.0.0.1:1?pool_size=3":          `backend "memcache://127.0.0.1:1?pool_size=3": unknown option "pool_size" (memcache:// takes timeout, max_idle, max_item)`,
		"memcache://127.0.0.1:1?timeout=1s&timeout=2": `backend "memcache://127.0.0.1:1?timeout=1s&timeout=2": option "timeout" given 2 times`,
	}
	for raw, want := range bad {
		_, err := core.OpenBackend(raw, backend.Options{Logger: slog.Default()})
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got  %v\n want %s", raw, err, want)
		}
		// Through New, the region names itself in front.
		_, err = core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: raw}}})
		if err == nil || err.Error() != `routecache: region "a": `+want {
			t.Errorf("New with %s: %v", raw, err)
		}
	}
	// An unresolvable host is an error at open (memcache.New would drop it
	// silently and fail every call with "no servers").
	_, err := core.OpenBackend("memcache://no-such-host.invalid:11211", backend.Options{Logger: slog.Default()})
	if err == nil || !strings.HasPrefix(err.Error(), `backend "memcache://no-such-host.invalid:11211": `) || !strings.Contains(err.Error(), "no-such-host.invalid") {
		t.Errorf("unresolvable host: %v", err)
	}
}

func mcEntry(key string, body []byte, counters ...backend.CounterSnap) *backend.Entry {
	now := time.Now().UnixNano()
	e := &backend.Entry{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: body,
		Created: now, FreshUntil: now + int64(time.Minute), StaleUntil: now + int64(time.Minute),
		ETag: core.StrongETag(body), Key: key, Counters: counters,
	}
	e.Prepare()
	return e
}

// Values over the item limit are errTooLarge, both when we know the limit
// (max_item, checked before sending) and when only the server does.
func TestMemcacheTooLarge(t *testing.T) {
	addrs := mcAddrs(t)
	ctx := context.Background()
	p := mcPrefix()

	b := mcOpen(t, mcURL(addrs, ""))
	if err := b.Store(ctx, p+":e:big", mcEntry("k", make([]byte, 1<<20)), time.Minute); !errors.Is(err, backend.ErrTooLarge) {
		t.Fatalf("1 MiB body under the default limit: %v", err)
	}
	// Just under the limit still fits.
	e := mcEntry("k", nil)
	e.Body = make([]byte, 1<<20-memcachebe.ItemOverhead-len(p+":e:fits")-e.Size()-8)
	if err := b.Store(ctx, p+":e:fits", e, time.Minute); err != nil {
		t.Fatalf("%d-byte entry: %v", len(e.Encode()), err)
	}
	b.Client().Delete(p + ":e:fits")

	// The servers run with the default -I 1m; claim 4 MiB so the server refuses.
	b4 := mcOpen(t, mcURL(addrs, "max_item=4MiB"))
	if err := b4.Store(ctx, p+":e:big", mcEntry("k", make([]byte, 3<<19)), time.Minute); !errors.Is(err, backend.ErrTooLarge) {
		t.Fatalf("1.5 MiB refused by the server: %v", err)
	}
	// The client still works after the server's SERVER_ERROR.
	if err := b4.Store(ctx, p+":e:small", mcEntry("k", []byte("x")), time.Minute); err != nil {
		t.Fatal(err)
	}
	if e, err := b4.Load(ctx, p+":e:small", nil, nil); e == nil || err != nil {
		t.Fatalf("after SERVER_ERROR: %v %v", e, err)
	}

	// At region level: the response is served in full, counted as too-large,
	// and is not a backend error.
	c := mcCache(t, mcURL(addrs, "max_item=4MiB"), core.RegionConfig{MaxEntryBytes: 4 << 20})
	rt, _ := c.Route("r")
	body := strings.Repeat("z", 3<<19)
	h := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
	for i := range 2 {
		w := serveOnce(rt, "/big", noParams, h)
		if w.Code != 200 || w.Body.Len() != len(body) || w.Header().Get("X-Cache") != "MISS" {
			t.Fatalf("request %d: %d %d %q", i, w.Code, w.Body.Len(), w.Header().Get("X-Cache"))
		}
	}
	st := c.Stats()["r"]
	if st.NotStored[core.NotStoredTooLarge] != 2 || st.Errors != 0 || st.Stores != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Bytes that are not an entry: load says errCorrupt and still fills the
// counters; at region level the request is a MISS that overwrites them.
func TestMemcacheCorrupt(t *testing.T) {
	addrs := mcAddrs(t)
	b := mcOpen(t, mcURL(addrs, ""))
	ctx := context.Background()
	p := mcPrefix()
	names := []string{p + ":v:r:r", p + ":v:t:a"}
	vals := make([]uint64, 2)
	if err := b.Ensure(ctx, names, vals); err != nil {
		t.Fatal(err)
	}
	key := p + ":e:bad"
	if err := b.Client().Set(&memcache.Item{Key: key, Value: []byte("RCE\x01 not really an entry")}); err != nil {
		t.Fatal(err)
	}
	got := make([]uint64, 2)
	e, err := b.Load(ctx, key, names, got)
	if !errors.Is(err, backend.ErrCorrupt) || e != nil || got[0] != vals[0] || got[1] != vals[1] {
		t.Fatalf("load of junk: %v %v %v (want errCorrupt and %v)", e, err, got, vals)
	}

	c := mcCache(t, mcURL(addrs, ""), core.RegionConfig{})
	rt, _ := c.Route("r", core.Tags("item:{id}"))
	pm := mapParams{"id": "1"}
	var calls atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "fresh %d", calls.Add(1)) }
	if w := serveOnce(rt, "/items/1", pm, h); w.Header().Get("X-Cache") != "MISS" {
		t.Fatal("first not a miss")
	}
	skey := core.StorageKey(rt, newGet("/items/1"), pm, "/items/:id")
	mb := core.RegionBackend(c, "r").(*memcachebe.Backend)
	good, err := mb.Client().Get(skey)
	if err != nil {
		t.Fatalf("stored entry not under %s: %v", skey, err)
	}
	bads := [][]byte{[]byte("garbage"), good.Value[:len(good.Value)/2], {}, append(append([]byte{}, good.Value[:len(good.Value)-1]...), good.Value[len(good.Value)-1]^1)}
	for i, bad := range bads {
		if err := mb.Client().Set(&memcache.Item{Key: skey, Value: bad}); err != nil {
			t.Fatal(err)
		}
		w := serveOnce(rt, "/items/1", pm, h)
		if w.Header().Get("X-Cache") != "MISS" || w.Body.String() != fmt.Sprintf("fresh %d", i+2) {
			t.Fatalf("case %d: %q %q", i, w.Header().Get("X-Cache"), w.Body.String())
		}
		if w := serveOnce(rt, "/items/1", pm, h); w.Header().Get("X-Cache") != "HIT" || w.Body.String() != fmt.Sprintf("fresh %d", i+2) {
			t.Fatalf("case %d: not overwritten: %q %q", i, w.Header().Get("X-Cache"), w.Body.String())
		}
	}
	if st := c.Stats()["r"]; st.Corrupt != uint64(len(bads)) || st.Errors != 0 { // once per request that read one
		t.Fatalf("stats %+v", st)
	}
}

// mcProxy is a counting TCP proxy in front of one memcached: it counts the
// commands clients send, by verb, and the keys asked per get command.
type mcProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	verbs  map[string]int
	keys   int
	dials  int
	conns  []net.Conn
}

func startMCProxy(t testing.TB, target string) *mcProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &mcProxy{ln: ln, target: target, verbs: map[string]int{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *mcProxy) addr() string { return p.ln.Addr().String() }

func (p *mcProxy) accept() {
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
		p.dials++
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(c, s); c.Close() }()
		go p.forward(c, s)
	}
}

// forward copies client→server, command by command, skipping the data
// block of storage commands so that only command lines are counted.
func (p *mcProxy) forward(c, s net.Conn) {
	defer s.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		p.mu.Lock()
		p.verbs[f[0]]++
		if f[0] == "get" || f[0] == "gets" {
			p.keys += len(f) - 1
		}
		p.mu.Unlock()
		if _, err := io.WriteString(s, line); err != nil {
			return
		}
		switch f[0] {
		case "set", "add", "replace", "append", "prepend", "cas":
			n, err := strconv.Atoi(f[4])
			if err != nil {
				return
			}
			if _, err := io.CopyN(s, r, int64(n)+2); err != nil {
				return
			}
		}
	}
}

func (p *mcProxy) snapshot() (verbs map[string]int, keys, dials int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	verbs = make(map[string]int, len(p.verbs))
	for k, v := range p.verbs {
		verbs[k] = v
	}
	return verbs, p.keys, p.dials
}

func startMCProxies(t testing.TB, addrs []string) ([]*mcProxy, []string) {
	var ps []*mcProxy
	var pa []string
	for _, a := range addrs {
		p := startMCProxy(t, a)
		ps = append(ps, p)
		pa = append(pa, p.addr())
	}
	return ps, pa
}

// A hit on a route with declared tags is ONE get command per server at
// most, sent to the servers in parallel: the entry, the region and key
// counters and the tag counters in one GetMulti; and nothing else.
func TestMemcacheHitIsOneRoundTrip(t *testing.T) {
	proxies, paddrs := startMCProxies(t, mcAddrs(t))
	c := mcCache(t, mcURL(paddrs, ""), core.RegionConfig{})
	rt, err := c.Route("r", core.Tags("item:{id}", "items", "shop:{id}"))
	if err != nil {
		t.Fatal(err)
	}
	h := func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "body") }
	const items = 12
	for id := range items {
		pm := mapParams{"id": strconv.Itoa(id)}
		if w := serveOnce(rt, "/items/"+strconv.Itoa(id), pm, h); w.Header().Get("X-Cache") != "MISS" {
			t.Fatalf("first %d: %q", id, w.Header().Get("X-Cache"))
		}
	}
	both, hits := 0, 0
	for rep := range 3 {
		for id := range items {
			pm := mapParams{"id": strconv.Itoa(id)}
			var before []map[string]int
			var kb []int
			for _, p := range proxies {
				v, k, _ := p.snapshot()
				before, kb = append(before, v), append(kb, k)
			}
			w := serveOnce(rt, "/items/"+strconv.Itoa(id), pm, h)
			if w.Header().Get("X-Cache") != "HIT" || w.Body.String() != "body" {
				t.Fatalf("rep %d id %d: %q %q", rep, id, w.Header().Get("X-Cache"), w.Body.String())
			}
			hits++
			servers, keys := 0, 0
			for i, p := range proxies {
				after, k, _ := p.snapshot()
				for verb, n := range after {
					d := n - before[i][verb]
					if d == 0 {
						continue
					}
					if verb != "gets" || d != 1 {
						t.Fatalf("hit on /items/%d: server %d got %d %q commands (want at most one gets, nothing else)", id, i, d, verb)
					}
					servers++
				}
				keys += k - kb[i]
			}
			// entry + region counter + key counter + 3 tag counters
			if keys != 6 || servers == 0 {
				t.Fatalf("hit on /items/%d: %d keys asked of %d servers, want 6", id, keys, servers)
			}
			if servers == 2 {
				both++
			}
		}
	}
	t.Logf("%d hits: each one gets line per server at most; %d hits spread their 6 keys over both servers (in parallel)", hits, both)
	if both == 0 {
		t.Fatal("no hit spread its keys over both servers: the test does not exercise the parallel case")
	}
	if st := c.Stats()["r"]; st.Hits != uint64(hits) || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Nothing in this test (nor Close, below) ever flushes.
	c.Close()
	for i, p := range proxies {
		v, _, _ := p.snapshot()
		if v["flush_all"] != 0 {
			t.Fatalf("server %d saw flush_all", i)
		}
		t.Logf("server %d commands: %v", i, v)
	}
}

// With max_idle (default 64) a loaded client keeps its connections; with
// gomemcache's default of 2 it dials again and again.
func TestMemcacheIdleConnections(t *testing.T) {
	addrs := mcAddrs(t)
	const workers, rounds = 32, 30
	dials := map[string]int{}
	// A generous timeout: this test counts connections, and the race
	// detector makes a churning client slow.
	for _, q := range []string{"timeout=5s", "timeout=5s&max_idle=2"} {
		proxies, paddrs := startMCProxies(t, addrs)
		b := mcOpen(t, mcURL(paddrs, q))
		p := mcPrefix()
		names := []string{p + ":a", p + ":b", p + ":c", p + ":d"}
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vals := make([]uint64, len(names))
				for range rounds {
					if _, err := b.Load(context.Background(), p+":e:x", names, vals); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, px := range proxies {
			_, _, d := px.snapshot()
			dials[q] += d
		}
	}
	t.Logf("%d workers x %d loads over 2 servers: %d connections with max_idle=64, %d with max_idle=2", workers, rounds, dials["timeout=5s"], dials["timeout=5s&max_idle=2"])
	def, two := dials["timeout=5s"], dials["timeout=5s&max_idle=2"]
	if def > 2*workers {
		t.Fatalf("max_idle=64: %d connections for %d workers on 2 servers", def, workers)
	}
	if two <= def {
		t.Fatalf("max_idle=2 opened %d connections, default %d: the option has no effect?", two, def)
	}
}

// A response computed before an invalidation and stored after it is never
// served (the pattern of TestInvalidationDuringFillIsNotServed, on
// memcached); and a counter lost from the server makes the entry a miss.
func TestMemcacheInvalidationDuringFill(t *testing.T) {
	addrs := mcAddrs(t)
	for _, kind := range []string{"tag", "region", "key", "lost-counter"} {
		t.Run(kind, func(t *testing.T) {
			c := mcCache(t, mcURL(addrs, ""), core.RegionConfig{})
			rt, err := c.Route("r", core.Tags("item:{id}"))
			if err != nil {
				t.Fatal(err)
			}
			p := mapParams{"id": "1"}
			var version, calls atomic.Int64
			entered, release := make(chan struct{}), make(chan struct{})
			h := func(w http.ResponseWriter, r *http.Request) {
				v := version.Load()
				if calls.Add(1) == 1 {
					close(entered)
					<-release
				}
				fmt.Fprint(w, v)
			}
			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- serveOnce(rt, "/items/1", p, h) }()
			<-entered
			version.Add(1)
			ctx := context.Background()
			switch kind {
			case "tag":
				err = c.InvalidateTags(ctx, "item:1")
			case "region":
				err = c.InvalidateRegion(ctx, "r")
			case "key":
				err = c.InvalidateKey(ctx, "r", "/items/1")
			case "lost-counter":
				mb := core.RegionBackend(c, "r").(*memcachebe.Backend)
				err = mb.Client().Delete(core.TagCounter(c, "r", "item:1"))
			}
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			if w := <-done; w.Body.String() != "0" || w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("first response: %q %q", w.Header().Get("X-Cache"), w.Body.String())
			}
			if st := c.Stats()["r"]; st.Stores != 1 {
				t.Fatalf("the old response should have been stored (to prove it is not served); stores=%d", st.Stores)
			}
			w := serveOnce(rt, "/items/1", p, h)
			if w.Body.String() != "1" || w.Header().Get("X-Cache") != "MISS" {
				t.Fatalf("after invalidation got %q %q, want MISS 1", w.Header().Get("X-Cache"), w.Body.String())
			}
			if w := serveOnce(rt, "/items/1", p, h); w.Body.String() != "1" || w.Header().Get("X-Cache") != "HIT" {
				t.Fatalf("refill not served: %q %q", w.Header().Get("X-Cache"), w.Body.String())
			}
		})
	}
}

// Close drops connections and nothing else: other data on the server stays.
func TestMemcacheCloseKeepsData(t *testing.T) {
	addrs := mcAddrs(t)
	other := memcache.New(addrs...)
	key := mcPrefix() + ":someone-else"
	if err := other.Set(&memcache.Item{Key: key, Value: []byte("theirs")}); err != nil {
		t.Fatal(err)
	}
	defer other.Delete(key)
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {Backend: mcURL(addrs, "")}, "b": {Backend: mcURL(addrs, "")}}})
	if err != nil {
		t.Fatal(err)
	}
	if core.BackendClients(c) != 1 {
		t.Fatalf("two regions on one URL opened %d clients", core.BackendClients(c))
	}
	rt, _ := c.Route("a")
	serveOnce(rt, "/x", noParams, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "x") })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if it, err := other.Get(key); err != nil || string(it.Value) != "theirs" {
		t.Fatalf("other data after Close: %v %v", it, err)
	}
}

// A dead server fails open: requests run their handler, uncached, and the
// error is counted.
func TestMemcacheDeadServerFailsOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := mcCache(t, mcURL([]string{dead}, "timeout=50ms"), core.RegionConfig{})
	rt, _ := c.Route("r", core.Tags("item:{id}"))
	for i := range 3 {
		w := serveOnce(rt, "/items/1", mapParams{"id": "1"}, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
		if w.Code != 200 || w.Body.String() != "ok" || w.Header().Get("X-Cache") != "BYPASS" {
			t.Fatalf("request %d: %d %q %q", i, w.Code, w.Body.String(), w.Header().Get("X-Cache"))
		}
	}
	if st := c.Stats()["r"]; st.Errors != 3 || st.Bypasses[core.BypassBackend] != 3 {
		t.Fatalf("stats %+v", st)
	}
	if err := c.InvalidateTags(context.Background(), "item:1"); err == nil {
		t.Fatal("invalidation on a dead server reported no error")
	}
}
