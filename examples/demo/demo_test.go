package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The demo's "done when" list, against every framework, in process.
func TestDemo(t *testing.T) {
	for _, fw := range []string{"gin", "echo", "nethttp"} {
		t.Run(fw, func(t *testing.T) { testDemo(t, fw) })
	}
}

func testDemo(t *testing.T, framework string) {
	h, rc, err := newServer(config{
		Framework: framework,
		Delay:     20 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := &client{t: t, base: srv.URL}

	// Cold, then warm: the second GET is a HIT that does not reach the origin.
	res := c.do("GET", "/articles/1", nil, nil)
	c.expect(res, 200, "MISS")
	first := res.body
	calls := c.originCalls()
	res = c.do("GET", "/articles/1", nil, nil)
	c.expect(res, 200, "HIT")
	if res.body != first {
		t.Errorf("HIT body %q, want the MISS body %q", res.body, first)
	}
	if got := c.originCalls(); got != calls {
		t.Errorf("origin_calls %d after a HIT, want %d", got, calls)
	}
	etag := res.header.Get("ETag")
	if etag == "" {
		t.Fatal("HIT has no ETag")
	}
	if res.header.Get("Age") == "" {
		t.Error("HIT has no Age")
	}

	// Conditional request: 304 with no body.
	res = c.do("GET", "/articles/1", map[string]string{"If-None-Match": etag}, nil)
	c.expect(res, http.StatusNotModified, "HIT")
	if res.body != "" {
		t.Errorf("304 with body %q", res.body)
	}

	// HEAD shares GET's entry.
	res = c.do("HEAD", "/articles/1", nil, nil)
	c.expect(res, 200, "HIT")

	// /headlines has its own, shorter lifetime (core.TTL): its hits say so.
	c.expect(c.do("GET", "/headlines", nil, nil), 200, "MISS")
	res = c.do("GET", "/headlines", nil, nil)
	c.expect(res, 200, "HIT")
	if cs := res.header.Get("Cache-Status"); !strings.HasPrefix(cs, "routecache; hit; ttl=") {
		t.Errorf("/headlines hit: Cache-Status %q", cs)
	} else if ttl, err := strconv.Atoi(strings.TrimPrefix(cs, "routecache; hit; ttl=")); err != nil || ttl < 0 || ttl > int(headlinesLifetime/time.Second) {
		t.Errorf("/headlines hit: Cache-Status %q, want a ttl of at most %v (core.TTL), not the region's 5 minutes", cs, headlinesLifetime)
	}

	// The list is cached too.
	c.expect(c.do("GET", "/articles", nil, nil), 200, "MISS")
	res = c.do("GET", "/articles", nil, nil)
	c.expect(res, 200, "HIT")
	var list []article
	if err := json.Unmarshal([]byte(res.body), &list); err != nil || len(list) != numArticles {
		t.Fatalf("list: %d articles, err %v", len(list), err)
	}

	// PUT invalidates the article's tag, which drops the article and the
	// list (tagged at run time with every article it shows): the next GETs
	// are MISSes with the new title.
	res = c.do("PUT", "/articles/1", nil, strings.NewReader(`{"title":"Edited"}`))
	if res.status != 200 {
		t.Fatalf("PUT: %d %s", res.status, res.body)
	}
	res = c.do("GET", "/articles/1", nil, nil)
	c.expect(res, 200, "MISS")
	var art article
	if err := json.Unmarshal([]byte(res.body), &art); err != nil {
		t.Fatal(err)
	}
	if art.Title != "Edited" || art.Rev != 2 {
		t.Errorf("after PUT: %+v, want title Edited rev 2", art)
	}
	res = c.do("GET", "/articles", nil, nil)
	c.expect(res, 200, "MISS")
	if !strings.Contains(res.body, `"title":"Edited"`) {
		t.Error("list after PUT does not have the new title")
	}
	c.expect(c.do("GET", "/articles/1", nil, nil), 200, "HIT")

	// Runtime tags: /headlines shows articles 1-3 and tags itself with
	// theirs (core.AddTags). A PUT of an article it does not show leaves
	// it cached; a PUT of one it shows drops it.
	c.expect(c.do("GET", "/headlines", nil, nil), 200, "MISS") // the PUT of 1 dropped it
	c.expect(c.do("GET", "/headlines", nil, nil), 200, "HIT")
	if res := c.do("PUT", "/articles/50", nil, strings.NewReader(`{"title":"Not a headline"}`)); res.status != 200 {
		t.Fatalf("PUT 50: %d %s", res.status, res.body)
	}
	c.expect(c.do("GET", "/headlines", nil, nil), 200, "HIT")
	if res := c.do("PUT", "/articles/2", nil, strings.NewReader(`{"title":"New headline"}`)); res.status != 200 {
		t.Fatalf("PUT 2: %d %s", res.status, res.body)
	}
	res = c.do("GET", "/headlines", nil, nil)
	c.expect(res, 200, "MISS")
	if !strings.Contains(res.body, "New headline") {
		t.Errorf("/headlines after PUT /articles/2: %s, want the new title", res.body)
	}

	// Bad requests: not 2xx, so nothing is invalidated.
	if res := c.do("PUT", "/articles/1", nil, strings.NewReader(`{"title":`)); res.status != 400 {
		t.Errorf("PUT bad JSON: %d, want 400", res.status)
	}
	if res := c.do("PUT", "/articles/1000", nil, strings.NewReader(`{"title":"x"}`)); res.status != 404 {
		t.Errorf("PUT unknown id: %d, want 404", res.status)
	}
	c.expect(c.do("GET", "/articles/1", nil, nil), 200, "HIT")

	// An unknown id is a 404, which is not stored.
	c.expect(c.do("GET", "/articles/1000", nil, nil), 404, "MISS")
	c.expect(c.do("GET", "/articles/1000", nil, nil), 404, "MISS")

	// /me: each user gets their own body, never a cached one.
	for _, user := range []string{"alice", "bob", "alice"} {
		res := c.do("GET", "/me", map[string]string{"Authorization": "Bearer " + user}, nil)
		c.expect(res, 200, "BYPASS")
		if want := `{"user":"` + user + `"}`; res.body != want {
			t.Errorf("/me as %s: %q, want %q", user, res.body, want)
		}
	}
	c.expect(c.do("GET", "/me", nil, nil), 401, "MISS")

	// 50 concurrent cold requests for one key: one origin call.
	calls = c.originCalls()
	var wg sync.WaitGroup
	results := make([]response, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.do("GET", "/articles/42", nil, nil)
		}()
	}
	wg.Wait()
	misses := 0
	for _, res := range results {
		if res.status != 200 || res.body != `{"id":42,"title":"Article 42","rev":1}` {
			t.Fatalf("concurrent GET: %d %q", res.status, res.body)
		}
		if res.header.Get("X-Cache") == "MISS" {
			misses++
		}
	}
	if got := c.originCalls() - calls; got != 1 {
		t.Errorf("50 concurrent cold GETs: %d origin calls, want 1", got)
	}
	if misses != 1 {
		t.Errorf("50 concurrent cold GETs: %d MISS responses, want 1", misses)
	}
}

type response struct {
	status int
	header http.Header
	body   string
}

type client struct {
	t    *testing.T
	base string
}

// do sends a request; safe to call from several goroutines.
func (c *client) do(method, path string, header map[string]string, body io.Reader) response {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Error(err)
		return response{}
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Error(err)
		return response{}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Error(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(bytes.TrimSpace(b))}
}

func (c *client) expect(res response, status int, xcache string) {
	c.t.Helper()
	if res.status != status || res.header.Get("X-Cache") != xcache {
		c.t.Fatalf("got %d X-Cache %q (%q), want %d %s", res.status, res.header.Get("X-Cache"), res.body, status, xcache)
	}
}

func (c *client) originCalls() int64 {
	c.t.Helper()
	res := c.do("GET", "/stats", nil, nil)
	var s statsBody
	if err := json.Unmarshal([]byte(res.body), &s); err != nil {
		c.t.Fatalf("/stats: %v: %q", err, res.body)
	}
	return s.OriginCalls
}

// run prints the listening line with the real address, serves, and stops
// on cancellation.
func TestRunListensAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{
			Addr:      "127.0.0.1:0",
			Framework: "nethttp",
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, pw)
	}()
	line := make([]byte, 256)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(line[:n]))
	addr, ok := strings.CutPrefix(got, "listening on http://")
	if !ok {
		t.Fatalf("first line %q", got)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		t.Fatalf("address %q is not the bound one", addr)
	}
	res, err := http.Get("http://" + addr + "/articles/7")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Cache") != "MISS" {
		t.Errorf("GET: %d %q", res.StatusCode, res.Header.Get("X-Cache"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestUnknownFramework(t *testing.T) {
	if _, _, err := newServer(config{Framework: "chi"}); err == nil {
		t.Fatal("no error for -framework chi")
	}
}

// The demo's -settings, -near and -purge-token flags.
func TestDemoFlags(t *testing.T) {
	cfg := config{Framework: "gin", Settings: "settings.example.ini", PurgeTok: "tok"}
	h, rc, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, _ := rc.Region("articles")
	if got := r.Config(); got.Stale != time.Minute || got.StaleIfError != 10*time.Minute || got.Backend != "memory://?max_bytes=32MiB" {
		t.Fatalf("settings not applied: %+v", got)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("PURGE", srv.URL+"/_cache/purge", nil)
	req.Header.Set("Surrogate-Key", "articles")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("purge without token: %d", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer tok")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("purge with token: %d", resp.StatusCode)
	}
	if _, _, err := newServer(config{Near: true}); err == nil || !strings.Contains(err.Error(), "-near needs") {
		t.Fatalf("-near on memory: %v", err)
	}
	if _, _, err := newServer(config{Settings: "no-such-file.ini"}); err == nil {
		t.Fatal("missing settings file accepted")
	}
}

// A -settings file replaces the built-in regions; one that leaves the
// articles region's max_tags unset still lets the list page, tagged with
// its 100 articles, be stored (not "too-many-tags" past the default 64):
// its second GET is a HIT, and a PUT of one of its articles drops it.
func TestDemoListCachedWithSettingsWithoutMaxTags(t *testing.T) {
	ini := filepath.Join(t.TempDir(), "s.ini")
	body := "cache.regions = articles, short\ncache.default.backend = memory://\n"
	if err := os.WriteFile(ini, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	h, rc, err := newServer(config{Framework: "gin", Settings: ini, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := &client{t: t, base: srv.URL}
	c.expect(c.do("GET", "/articles", nil, nil), 200, "MISS")
	c.expect(c.do("GET", "/articles", nil, nil), 200, "HIT")
	if res := c.do("PUT", "/articles/100", nil, strings.NewReader(`{"title":"Last"}`)); res.status != 200 {
		t.Fatalf("PUT 100: %d %s", res.status, res.body)
	}
	c.expect(c.do("GET", "/articles", nil, nil), 200, "MISS")
	if st := rc.Stats()["articles"]; len(st.NotStored) != 0 {
		t.Fatalf("NotStored %v, want none", st.NotStored)
	}
}

// /metrics exposes the same per-region hit, miss and stale counts as /stats
// after a scripted run.
func TestDemoMetricsMatchStats(t *testing.T) {
	for _, fw := range []string{"gin", "echo", "nethttp"} {
		t.Run(fw, func(t *testing.T) {
			h, rc, err := newServer(config{Framework: fw})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			srv := httptest.NewServer(h)
			defer srv.Close()
			get := func(path string) string {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b)
			}
			for _, p := range []string{"/articles/1", "/articles/1", "/articles/2", "/articles", "/articles", "/articles/1"} {
				get(p)
			}
			var st struct {
				Regions map[string]struct{ Hits, Misses, Stale uint64 } `json:"regions"`
			}
			if err := json.Unmarshal([]byte(get("/stats")), &st); err != nil {
				t.Fatal(err)
			}
			metrics := get("/metrics")
			a := st.Regions["articles"]
			if a.Hits != 3 || a.Misses != 3 {
				t.Fatalf("stats: %+v", a)
			}
			for name, want := range map[string]uint64{"hits_total": a.Hits, "misses_total": a.Misses, "stale_total": a.Stale} {
				line := fmt.Sprintf(`routecache_%s{region="articles"} %d`, name, want)
				if !strings.Contains(metrics, line+"\n") {
					t.Errorf("/metrics lacks %q", line)
				}
			}
		})
	}
}

// Two demo processes sharing Redis for data and cache, with a near cache:
// a PUT on one makes the other's next GET a MISS with the new data, and a
// burst of cold GETs split across both calls the origin once in all.
func TestDemoTwoReplicas(t *testing.T) {
	addr := os.Getenv("ROUTECACHE_TEST_REDIS")
	if addr == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ROUTECACHE_TEST_REDIS not set under CI=true (run make test)")
		}
		t.Skip("ROUTECACHE_TEST_REDIS not set: run make test")
	}
	// A private settings file: a unique key prefix per run keeps runs apart.
	prefix := fmt.Sprintf("demo%d", time.Now().UnixNano())
	ini := filepath.Join(t.TempDir(), "s.ini")
	// Generous timeouts: CI shares its cores, and a timed-out call is a
	// bypass, which would be a second origin call in the burst below.
	body := fmt.Sprintf("cache.regions = articles, short\ncache.default.backend = redis://%s/0?timeout=5s\ncache.default.prefix = %s\ncache.articles.lease_wait = 30s\n", addr, prefix)
	if err := os.WriteFile(ini, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	data := "redis://" + addr + "/1"
	var srvs []*httptest.Server
	for _, fw := range []string{"gin", "echo"} {
		h, rc, err := newServer(config{Framework: fw, Settings: ini, Near: true, Data: data, Delay: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		s := httptest.NewServer(h)
		defer s.Close()
		srvs = append(srvs, s)
	}
	do := func(s *httptest.Server, method, path, body string) (string, string) {
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.Host = "demo.example" // replicas behind one name
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("X-Cache"), string(b)
	}
	a, b := srvs[0], srvs[1]
	id := fmt.Sprintf("/articles/%d", 1+time.Now().UnixNano()%100)
	do(a, "GET", id, "")
	do(b, "GET", id, "")
	if xc, _ := do(b, "GET", id, ""); xc != "HIT" {
		t.Fatalf("B: %s", xc)
	}
	title := fmt.Sprintf("edited %d", time.Now().UnixNano())
	do(a, "PUT", id, `{"title":"`+title+`"}`)
	// B's next GET: a MISS with the new data (the invalidation reached B's
	// near cache through pub/sub; give the message a bounded time to land:
	// 30 s, for a loaded machine).
	var xc, got string
	for i := 0; i < 6000; i++ {
		if xc, got = do(b, "GET", id, ""); strings.Contains(got, title) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(got, title) || xc != "MISS" {
		t.Fatalf("B after PUT on A: %s %s", xc, got)
	}
	// A burst of cold GETs split over both: one origin call in all.
	originBefore := originCalls(t, a) + originCalls(t, b)
	cold := "/articles?burst=" + title[len("edited "):]
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); do(srvs[i%2], "GET", cold, "") }(i)
	}
	wg.Wait()
	if n := originCalls(t, a) + originCalls(t, b) - originBefore; n != 1 {
		t.Fatalf("%d origin calls for 40 cold requests over 2 replicas", n)
	}
}

func originCalls(t *testing.T, s *httptest.Server) int64 {
	resp, err := http.Get(s.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		OriginCalls int64 `json:"origin_calls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.OriginCalls
}
