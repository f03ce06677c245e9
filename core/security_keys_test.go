package core_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/internal/rawreq"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Threats against the key: requests a handler can tell apart that the
// cache must not fold into one entry, and credentials that must never
// reach a backend. Requests go over a raw connection where Go's client
// would normalise what an attacker sends (duplicate lines, raw bytes).

// rawDo sends one request written by hand (target and header lines as
// given) and reads the response.
func rawDo(t *testing.T, srv *httptest.Server, target string, lines ...string) secResp {
	t.Helper()
	resp, body, err := rawreq.Get(srv.Listener.Addr().String(), target, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return secResp{resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), body, resp.Header}
}

// lastCredential reads the Authorization header as some frameworks'
// authenticators do: the last non-empty line wins.
func lastCredential(r *http.Request) string {
	tok := ""
	for _, v := range r.Header.Values("Authorization") {
		if v != "" {
			tok = v
		}
	}
	return tok
}

// An empty Authorization line followed by a real one is still a request
// with credentials: it bypasses, and with VaryAuthorization every line is
// keyed, so the attacker's page never reaches an anonymous visitor.
func TestSecurityAnyAuthorizationLineBypasses(t *testing.T) {
	me := func(w http.ResponseWriter, r *http.Request) {
		if tok := lastCredential(r); tok != "" {
			fmt.Fprintf(w, "page of %s", tok)
			return
		}
		fmt.Fprint(w, "anonymous page")
	}
	t.Run("default", func(t *testing.T) {
		_, srv := secApp(t, core.RegionConfig{}, "GET /me", me)
		a := rawDo(t, srv, "/me", "Authorization:", "Authorization: Bearer attacker")
		if a.body != "page of Bearer attacker" || a.xcache != "BYPASS" {
			t.Fatalf("attacker: %q %q", a.xcache, a.body)
		}
		if e := rawDo(t, srv, "/me", "Authorization:"); e.xcache != "BYPASS" {
			t.Fatalf("an empty Authorization line alone was not bypassed: %q", e.xcache)
		}
		for i := 0; i < 2; i++ {
			if v := rawDo(t, srv, "/me"); v.body != "anonymous page" {
				t.Fatalf("anonymous visitor %d got %q (%s)", i, v.body, v.xcache)
			}
		}
	})
	t.Run("VaryAuthorization", func(t *testing.T) {
		_, srv := secApp(t, core.RegionConfig{VaryAuthorization: true}, "GET /me", me)
		a := rawDo(t, srv, "/me", "Authorization:", "Authorization: Bearer attacker")
		if a.body != "page of Bearer attacker" {
			t.Fatalf("attacker: %q", a.body)
		}
		for i := 0; i < 2; i++ {
			if v := rawDo(t, srv, "/me", "Authorization:"); v.body != "anonymous page" {
				t.Fatalf("empty-credential visitor %d got %q (%s)", i, v.body, v.xcache)
			}
			if v := rawDo(t, srv, "/me"); v.body != "anonymous page" {
				t.Fatalf("anonymous visitor %d got %q (%s)", i, v.body, v.xcache)
			}
		}
		if v := rawDo(t, srv, "/me", "Authorization:", "Authorization: Bearer attacker"); v.xcache != "HIT" {
			t.Fatalf("the same credential lines did not share their entry: %q", v.xcache)
		}
	})
}

// A path whose raw form differs from its one escaped form ("/a/<%41" and
// "/a/%3CA" both escape to "/a/%3CA") reaches a handler reading the raw
// path (as Echo's router and Gin's UseRawPath do) differently: it gets a
// key of its own, while InvalidateKey by the escaped path reaches both.
func TestSecurityRawPathIsPartOfTheKey(t *testing.T) {
	c, srv := secApp(t, core.RegionConfig{}, "GET /a/{rest...}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "raw=%q path=%q", r.URL.RawPath, r.URL.Path)
	})
	for _, pair := range [][2]string{
		{"/a/<%41", "/a/%3CA"},
		{"/a/%22%41", "/a/%22A"},
		{"/a/{%41", "/a/%7BA"},
		{"/a/|%41", "/a/%7CA"},
		{"/a/^%41", "/a/%5EA"},
		{"/a/%41", "/a/A"},
	} {
		first := rawDo(t, srv, pair[0])
		second := rawDo(t, srv, pair[1])
		if first.body == second.body {
			t.Fatalf("%s and %s read the same: %q", pair[0], pair[1], first.body)
		}
		if second.xcache == "HIT" {
			t.Fatalf("%s was answered with %s's entry: %q", pair[1], pair[0], second.body)
		}
		if again := rawDo(t, srv, pair[0]); again.xcache != "HIT" || again.body != first.body {
			t.Fatalf("%s again: %q %q", pair[0], again.xcache, again.body)
		}
	}
	// One key counter per escaped path: invalidating it reaches every
	// raw spelling.
	if err := c.InvalidateKey(context.Background(), "r", "/a/%3CA"); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/a/<%41", "/a/%3CA"} {
		if v := rawDo(t, srv, target); v.xcache != "MISS" {
			t.Fatalf("%s after InvalidateKey: %q", target, v.xcache)
		}
	}
}

// {header:Name} keeps header lines apart: "en" + "fr" on two lines and
// "en,fr" on one are different requests to a handler reading the lines.
func TestSecurityHeaderTemplateKeepsLinesApart(t *testing.T) {
	_, srv := secApp(t, core.RegionConfig{}, "GET /t", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%q", r.Header.Values("Accept-Language"))
	}, core.Key("t:{header:Accept-Language}"))
	cases := [][]string{
		{"Accept-Language: en", "Accept-Language: fr"},
		{"Accept-Language: en,fr"},
		{"Accept-Language: en%2Cfr"},
		{"Accept-Language:"},
		nil,
	}
	bodies := map[string]int{}
	for i, lines := range cases {
		got := rawDo(t, srv, "/t", lines...)
		if got.xcache != "MISS" {
			t.Fatalf("case %d %q: %q %q (shares an entry)", i, lines, got.xcache, got.body)
		}
		if j, ok := bodies[got.body]; ok {
			t.Fatalf("cases %d and %d read the same", i, j)
		}
		bodies[got.body] = i
	}
	for i, lines := range cases {
		if got := rawDo(t, srv, "/t", lines...); got.xcache != "HIT" {
			t.Fatalf("case %d again: %q", i, got.xcache)
		}
	}
}

// Echo's Context.Scheme reads X-Forwarded-Ssl, X-Url-Scheme and
// X-Forwarded-Protocol; Gin's ClientIP and Echo's RealIP read
// X-Forwarded-For and X-Real-Ip (and platform headers). A handler
// reflecting one must not hand its answer to requests without it.
func TestSecuritySchemeAndClientIPHeadersArePartOfTheKey(t *testing.T) {
	for _, h := range append(append([]string{}, core.KeyedForwardHeaders...), core.ClientIPHeaders...) {
		t.Run(h, func(t *testing.T) {
			_, srv := secApp(t, core.RegionConfig{}, "GET /p", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "seen %q", r.Header.Values(h))
			})
			if a := secDo(t, srv, "GET", "/p", nil, h, "evil"); a.xcache != "MISS" {
				t.Fatalf("attacker: %q", a.xcache)
			}
			for i := 0; i < 2; i++ {
				if v := secDo(t, srv, "GET", "/p", nil); v.body != `seen []` {
					t.Fatalf("visitor %d got %q (%s)", i, v.body, v.xcache)
				}
			}
		})
	}
	t.Run("IgnoreClientIPHeaders", func(t *testing.T) {
		_, srv := secApp(t, core.RegionConfig{IgnoreClientIPHeaders: true}, "GET /p", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "same for everyone")
		})
		secDo(t, srv, "GET", "/p", nil, "X-Forwarded-For", "192.0.2.1")
		if v := secDo(t, srv, "GET", "/p", nil, "X-Forwarded-For", "192.0.2.2"); v.xcache != "HIT" {
			t.Fatalf("with IgnoreClientIPHeaders, clients did not share: %q", v.xcache)
		}
		if v := secDo(t, srv, "GET", "/p", nil, "X-Forwarded-Proto", "https"); v.xcache != "MISS" {
			t.Fatalf("IgnoreClientIPHeaders dropped a scheme header from the key: %q", v.xcache)
		}
	})
}

// Credentials never enter a key in clear: VaryHeaders and templates refuse
// them at configuration, and VaryCookies and VaryAuthorization values are
// keyed by an HMAC under the Cache's secret, so neither the value nor an
// unkeyed hash of it reaches the backend.
func TestSecurityCredentialsNeverReachTheBackend(t *testing.T) {
	for _, h := range []string{"Authorization", "authorization", "Proxy-Authorization", "Cookie"} {
		_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {VaryHeaders: []string{h}}}})
		if err == nil || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("VaryHeaders %q: %v", h, err)
		}
	}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tpl := range []string{"{header:Authorization}", "u:{header:cookie}", "{header:Proxy-Authorization}"} {
		if _, err := c.Route("r", core.Key(tpl)); err == nil || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("Key(%q): %v", tpl, err)
		}
		if _, err := c.Route("r", core.Tags(tpl)); err == nil {
			t.Errorf("Tags(%q): no error", tpl)
		}
	}

	const session, token = "sess-5ecret-value", "tok-5ecret-value"
	secret := []byte("shared by the replicas")
	keyOf := func(t *testing.T, cfg core.Config, target string, hdr ...string) string {
		t.Helper()
		c, err := core.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rt, err := c.Route("r")
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", target, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		k, _, ok := core.CanonicalKey(rt, req, noParams, "/me")
		if !ok {
			t.Fatal("no key")
		}
		return k
	}
	rc := core.RegionConfig{VaryCookies: []string{"sid"}, VaryAuthorization: true}
	cfg := core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Secret: secret}
	hdr := []string{"Cookie", "sid=" + session, "Authorization", "Bearer " + token}
	k1 := keyOf(t, cfg, "/me", hdr...)
	for _, s := range []string{session, token, sha256Hex(session), sha256Hex("Bearer " + token)} {
		if strings.Contains(k1, s) {
			t.Fatalf("the key holds %q", s)
		}
	}
	if k2 := keyOf(t, cfg, "/me", hdr...); k2 != k1 {
		t.Fatal("two Caches with the same Secret key one credential differently: replicas would not share")
	}
	if k3 := keyOf(t, core.Config{Regions: cfg.Regions}, "/me", hdr...); k3 == k1 {
		t.Fatal("a Cache without Secret keyed the credential as one with it")
	}
	if k4 := keyOf(t, cfg, "/me", "Cookie", "sid="+session+"; sid=other", "Authorization", "Bearer "+token); k4 == k1 {
		t.Fatal("a second sid cookie did not change the key")
	}

	u := testServerOptional(t, "ROUTECACHE_TEST_REDIS")
	if u == "" {
		return
	}
	prefix := fmt.Sprintf("sec%d", time.Now().UnixNano())
	rrc := rc
	rrc.Backend, rrc.Prefix = "redis://"+u+"/0", prefix
	_, srv := secApp(t, rrc, "GET /me", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "personal page")
	})
	secDo(t, srv, "GET", "/me", nil, hdr...)
	if v := secDo(t, srv, "GET", "/me", nil, hdr...); v.xcache != "HIT" {
		t.Fatalf("second request: %q", v.xcache)
	}
	rdb := redis.NewClient(&redis.Options{Addr: u})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), prefix+":*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	for _, k := range keys {
		v, _ := rdb.Get(context.Background(), k).Result()
		for _, s := range []string{session, token} {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Fatalf("backend key %q holds the credential %q", k, s)
			}
		}
	}
}
