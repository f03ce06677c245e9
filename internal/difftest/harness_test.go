package difftest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// reqCase is one request of the corpus, written on the wire by hand.
type reqCase struct {
	name   string
	method string // "" is GET
	target string // the request-target, verbatim
	// lines are header lines, verbatim ("name: value"); a Host line
	// replaces the default "Host: app.test".
	lines []string
	// etag, when set, sends If-None-Match with the ETag the cached app
	// gives for the same request without it: a validator that came from
	// the cache.
	etag bool
	// partner names the case this one would share an entry with if the
	// cache ignored what tells them apart (TestPairs sends both).
	partner string
}

func (c reqCase) verb() string {
	if c.method == "" {
		return http.MethodGet
	}
	return c.method
}

// raw renders the request; extra lines go after the case's own.
func (c reqCase) raw(extra ...string) []byte {
	var b bytes.Buffer
	b.WriteString(c.verb() + " " + c.target + " HTTP/1.1\r\n")
	hasHost := false
	for _, l := range c.lines {
		if len(l) >= 5 && strings.EqualFold(l[:5], "host:") {
			hasHost = true
		}
	}
	if !hasHost {
		b.WriteString("Host: app.test\r\n")
	}
	for _, l := range append(append([]string(nil), c.lines...), extra...) {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// result is a response as the client received it.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// doer sends a raw request and returns the response.
type doer func(raw []byte, method string) result

// tcpDoer sends each request on a TCP connection to addr exactly as
// written (the Go client would canonicalise header names, reorder lines
// and escape the path). Connections are kept alive and reused, one
// request at a time each; a reused connection the server closed meanwhile
// is replaced once. The deadline is only a safety net against a hung
// server, far beyond any loaded machine's latency. Idle connections are
// closed when the test ends.
func tcpDoer(tb testing.TB, addr string) doer {
	var mu sync.Mutex
	var idle []*tcpConn
	tb.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, tc := range idle {
			tc.c.Close()
		}
		idle = nil
	})
	dial := func() (*tcpConn, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return &tcpConn{c: c, r: bufio.NewReader(c)}, nil
	}
	return func(raw []byte, method string) result {
		for attempt := 0; ; attempt++ {
			mu.Lock()
			var tc *tcpConn
			if n := len(idle); n > 0 && attempt == 0 {
				tc, idle = idle[n-1], idle[:n-1]
			}
			mu.Unlock()
			reused := tc != nil
			if !reused {
				var err error
				if tc, err = dial(); err != nil {
					return result{err: err}
				}
			}
			res, keep, err := tc.roundTrip(raw, method)
			if err != nil {
				tc.c.Close()
				if reused && res.status == 0 {
					continue // closed while idle: once more on a new connection
				}
				return result{err: err}
			}
			if keep {
				mu.Lock()
				idle = append(idle, tc)
				mu.Unlock()
			} else {
				tc.c.Close()
			}
			return res
		}
	}
}

// tcpConn is a client connection with its reader.
type tcpConn struct {
	c net.Conn
	r *bufio.Reader
}

// roundTrip writes raw and reads the answer; keep reports whether the
// connection can carry another request.
func (tc *tcpConn) roundTrip(raw []byte, method string) (result, bool, error) {
	_ = tc.c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := tc.c.Write(raw); err != nil {
		return result{}, false, err
	}
	res, err := http.ReadResponse(tc.r, &http.Request{Method: method})
	if err != nil {
		return result{}, false, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return result{status: res.StatusCode}, false, err
	}
	return result{status: res.StatusCode, header: res.Header, body: body}, !res.Close, nil
}

// handlerDoer serves each request in process: parsed from the raw bytes
// with http.ReadRequest (so raw forms survive), answered into a recorder.
// A request the parser rejects reports errUnparsable.
func handlerDoer(h http.Handler) doer {
	return func(raw []byte, method string) result {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return result{err: errUnparsable}
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		return result{status: res.StatusCode, header: res.Header, body: body}
	}
}

var errUnparsable = errors.New("routecache: request does not parse")

// pair is one app served cached and uncached.
type pair struct {
	front   string
	backend string
	rc      *core.Cache
	cached  doer
	plain   doer
	// inProcess responses come from a recorder, which sets no
	// Content-Length: that header is then left out of comparisons.
	inProcess bool
	// hits counts cached answers served from the cache, notModified the
	// 304s accepted: a run must exercise both, or it proves nothing.
	hits, notModified atomic.Int64
}

var prefixSeq atomic.Uint64

// uniquePrefix returns a key prefix no other test run uses.
func uniquePrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("difftest-%s-%d", hex.EncodeToString(b[:]), prefixSeq.Add(1))
}

// backendDef is a store the suite runs on.
type backendDef struct {
	name string
	url  func(tb testing.TB) string
}

var backends = []backendDef{
	{"memory", func(testing.TB) string { return "" }},
	{"redis", func(tb testing.TB) string { return "redis://" + testServer(tb, "ROUTECACHE_TEST_REDIS") + "/0" }},
}

// testServer returns the address the test command exported in env.
// Outside CI a missing server skips the test; under CI=true it fails it
// (as in core's tests: CI must never pass by skipping).
func testServer(tb testing.TB, env string) string {
	tb.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("routecache: %s is not set under CI=true: the test command must start the server (run `make test`)", env)
		}
		tb.Skipf("%s not set: run `make test` to start the servers", env)
	}
	return v
}

// newCache opens the app's regions on a backend URL under a fresh prefix.
func newCache(tb testing.TB, url string) *core.Cache {
	tb.Helper()
	rc, err := core.New(core.Config{Regions: regions(url, uniquePrefix())})
	if err != nil {
		tb.Fatalf("routecache: core.New: %v", err)
	}
	return rc
}

// newTCPPair serves the front cached (on the backend) and uncached on
// two real TCP servers.
func newTCPPair(t *testing.T, f frontDef, be backendDef, unsafe bool) *pair {
	t.Helper()
	url := be.url(t)
	rc := newCache(t, url)
	cached := httptest.NewServer(f.build(t, rc, unsafe))
	plain := httptest.NewServer(f.build(t, nil, unsafe))
	t.Cleanup(func() {
		cached.Close()
		plain.Close()
		_ = rc.Close()
	})
	return &pair{
		front: f.name, backend: be.name, rc: rc,
		cached: tcpDoer(t, cached.Listener.Addr().String()),
		plain:  tcpDoer(t, plain.Listener.Addr().String()),
	}
}

// reset makes every stored entry unusable, so that a sequence of
// requests starts from an empty cache.
func (p *pair) reset(tb testing.TB) {
	for _, r := range regionNames {
		if err := p.rc.InvalidateRegion(context.Background(), r); err != nil {
			tb.Fatalf("routecache: invalidate region %s: %v", r, err)
		}
	}
}

// diff is one request whose cached answer differs from the uncached one.
type diff struct {
	c      reqCase
	raw    []byte
	why    string
	cached result
	plain  result
}

func (d diff) String() string {
	return fmt.Sprintf("case %q: %s\nrequest:\n%s\ncached (X-Cache %q):\n%s\nuncached:\n%s",
		d.c.name, d.why, indent(string(d.raw)), d.cached.header.Get("X-Cache"),
		indent(show(d.cached)), indent(show(d.plain)))
}

func indent(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

func show(r result) string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d\n%s\n%s", r.status, headerText(r.header), r.body)
}

// cacheOwned are the response headers the cache adds to a hit (or a
// miss) and Date: left out of every comparison.
var cacheOwned = []string{"X-Cache", "Cache-Status", "Age", "Etag", "Last-Modified", "Date"}

// headerText renders the comparable headers: canonical names, sorted,
// every value in order.
func headerText(h http.Header) string {
	var lines []string
	for k, vs := range h {
		for _, v := range vs {
			lines = append(lines, k+": "+v)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// comparable returns h without cacheOwned headers, names canonical (as a
// client reading the wire sees them, also for in-process recorders,
// which keep a handler's map keys as they are).
func comparable(h http.Header, inProcess bool) http.Header {
	out := http.Header{}
	for _, k := range sortedNames(h) {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], h[k]...)
	}
	for _, k := range cacheOwned {
		delete(out, k)
	}
	if inProcess {
		delete(out, "Content-Length")
	}
	return out
}

func sortedNames(h http.Header) []string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// conditional lines of a request, dropped to ask for the full answer.
func isConditional(line string) bool {
	name, _, _ := strings.Cut(line, ":")
	name = http.CanonicalHeaderKey(strings.TrimSpace(name))
	return name == "If-None-Match" || name == "If-Modified-Since"
}

// exchange sends one case to both apps and returns the difference, if
// any. Responses are compared on status, headers (cacheOwned aside) and,
// except for HEAD, body. A 304 from the cached app to a conditional
// request is accepted only when the uncached app answers 200 and the
// cached app's full answer to the same request without its conditions
// equals the uncached one (so the validator named the right body).
func (p *pair) exchange(c reqCase) *diff {
	var extra []string
	if c.etag {
		extra = append(extra, "If-None-Match: "+p.validator(c))
	}
	raw := c.raw(extra...)
	plain := p.plain(raw, c.verb())
	cached := p.cached(raw, c.verb())
	d := &diff{c: c, raw: raw, cached: cached, plain: plain}
	if plain.err == errUnparsable && cached.err == errUnparsable {
		return nil
	}
	if cached.err != nil || plain.err != nil {
		d.why = "transport error"
		return d
	}
	if cached.status == http.StatusNotModified && plain.status == http.StatusOK && p.conditional(c, extra) {
		full := c
		full.lines = nil
		for _, l := range c.lines {
			if !isConditional(l) {
				full.lines = append(full.lines, l)
			}
		}
		cached = p.cached(full.raw(), c.verb())
		d.cached = cached
		if w := p.compare(c.verb(), cached, plain); w != "" {
			d.why = "304 for a conditional request, but the cached full answer differs: " + w
			return d
		}
		p.notModified.Add(1)
		return nil
	}
	if cached.header.Get("X-Cache") == "HIT" {
		p.hits.Add(1)
	}
	if d.why = p.compare(c.verb(), cached, plain); d.why != "" {
		return d
	}
	return nil
}

func (p *pair) conditional(c reqCase, extra []string) bool {
	for _, l := range append(append([]string(nil), c.lines...), extra...) {
		if isConditional(l) {
			return true
		}
	}
	return false
}

// compare returns what differs between two responses, or "".
func (p *pair) compare(method string, cached, plain result) string {
	if cached.err != nil || plain.err != nil {
		return "transport error"
	}
	if cached.status != plain.status {
		return fmt.Sprintf("status %d, uncached %d", cached.status, plain.status)
	}
	if method != http.MethodHead && !bytes.Equal(cached.body, plain.body) {
		return "body differs"
	}
	if a, b := headerText(comparable(cached.header, p.inProcess)), headerText(comparable(plain.header, p.inProcess)); a != b {
		return "headers differ: " + lineDiff(a, b)
	}
	return ""
}

// lineDiff names the lines only in a and only in b.
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var onlyA, onlyB []string
	for l, n := range count {
		for ; n > 0; n-- {
			onlyA = append(onlyA, l)
		}
		for ; n < 0; n++ {
			onlyB = append(onlyB, l)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return fmt.Sprintf("cached only %q, uncached only %q", onlyA, onlyB)
}

// validator returns the ETag the cached app gives for c without
// conditions (asking twice: a miss carries none, the hit after it does).
func (p *pair) validator(c reqCase) string {
	full := c
	full.etag = false
	full.method = http.MethodGet
	for i := 0; i < 2; i++ {
		if r := p.cached(full.raw(), http.MethodGet); r.err == nil {
			if et := r.header.Get("Etag"); et != "" {
				return et
			}
		}
	}
	return `"no-etag-from-cache"`
}

// report fails t once per case with the first difference seen for it.
func report(t *testing.T, label string, diffs []diff) {
	t.Helper()
	seen := map[string]bool{}
	for _, d := range diffs {
		if seen[d.c.name] {
			continue
		}
		seen[d.c.name] = true
		t.Errorf("%s: %s", label, d)
	}
}

// collector gathers diffs from concurrent exchanges.
type collector struct {
	mu    sync.Mutex
	diffs []diff
}

func (c *collector) add(d *diff) {
	if d == nil {
		return
	}
	c.mu.Lock()
	c.diffs = append(c.diffs, *d)
	c.mu.Unlock()
}
