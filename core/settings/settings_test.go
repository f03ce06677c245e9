package settings

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/internal/bridge"
)

// settingsWith returns a settings map listing regions "articles, short"
// plus the given key/value pairs.
func settingsWith(kv ...string) map[string]string {
	m := map[string]string{"cache.regions": "articles, short"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestConfigFromSettingsErrors has one row per distinct error message.
func TestConfigFromSettingsErrors(t *testing.T) {
	const p = "routecache: settings: "
	cases := []struct {
		name string
		s    map[string]string
		want string
	}{
		{"duplicate after trim", map[string]string{"cache.regions": "a", " cache.regions ": "a"},
			p + `cache.regions: set more than once (keys differ only in surrounding whitespace)`},
		{"regions missing", map[string]string{"cache.articles.ttl": "1m", "app.x": "1"},
			p + `cache.regions: missing (list the region names, e.g. "cache.regions = articles, short")`},
		{"regions empty", map[string]string{"cache.regions": "  "},
			p + `cache.regions: no regions listed`},
		{"regions empty item", map[string]string{"cache.regions": "a,,b"},
			p + `cache.regions: empty item in list "a,,b"`},
		{"regions bad name", map[string]string{"cache.regions": "a b"},
			p + `cache.regions: region name "a b" must match ^[A-Za-z0-9_.-]{1,64}$`},
		{"regions reserved", map[string]string{"cache.regions": "default"},
			p + `cache.regions: region name "default" is reserved for cache.default.<option>`},
		{"regions twice", map[string]string{"cache.regions": "a, b, a"},
			p + `cache.regions: region "a" listed twice`},
		{"unknown key", settingsWith("cache.ttl", "1m"),
			p + `cache.ttl: unknown key (want cache.regions, cache.secret, cache.<region>.<option> or cache.default.<option>)`},
		{"unknown option", settingsWith("cache.articles.tll", "1m"),
			p + `cache.articles.tll: unknown option "tll" (want one of backend, ttl, stale, stale_if_error, early_refresh, max_refreshes, fill_timeout, lease_ttl, lease_wait, prefix, max_entry_bytes, statuses, vary_headers, vary_cookies, ignore_cookies, vary_authorization, soft_invalidation, ignore_client_ip_headers, canonical_query, status_ttl, use_cache_control, cdn_headers, compress, tag_headers, max_tags)`},
		{"region not listed", settingsWith("cache.artcles.ttl", "1m"),
			p + `cache.artcles.ttl: region "artcles" is not listed in cache.regions (articles, short)`},
		{"bad duration", settingsWith("cache.articles.ttl", "ten"),
			p + `cache.articles.ttl: bad duration "ten" (want a Go duration such as 30s, 10m or 1h30m): time: invalid duration "ten"`},
		{"duration without unit", settingsWith("cache.default.stale", "600"),
			p + `cache.default.stale: bad duration "600" (want a Go duration such as 30s, 10m or 1h30m): time: missing unit in duration "600"`},
		{"negative duration", settingsWith("cache.short.fill_timeout", "-1s"),
			p + `cache.short.fill_timeout: negative duration "-1s" (want 0 or more)`},
		{"bad size", settingsWith("cache.articles.max_entry_bytes", "1 lot"),
			p + `cache.articles.max_entry_bytes: bad size "1 lot" (want a positive number with an optional unit B, KiB, MiB, GiB, KB, MB, GB)`},
		{"bad status", settingsWith("cache.articles.statuses", "200, ok"),
			p + `cache.articles.statuses: bad status "ok": strconv.Atoi: parsing "ok": invalid syntax`},
		{"uncacheable status", settingsWith("cache.articles.statuses", "200, 700"),
			p + `cache.articles.statuses: status 700 cannot be cached`},
		{"status 206", settingsWith("cache.articles.statuses", "206"),
			p + `cache.articles.statuses: status 206 cannot be cached: it answers a range or conditional request, so it depends on request headers the key does not hold`},
		{"list empty item", settingsWith("cache.articles.vary_headers", "Accept,"),
			p + `cache.articles.vary_headers: empty item in list "Accept,"`},
		{"bad header", settingsWith("cache.articles.vary_headers", "Accept Language"),
			p + `cache.articles.vary_headers: VaryHeaders: "Accept Language" is not a header name`},
		{"bad cookie", settingsWith("cache.default.ignore_cookies", "_ga, a=b"),
			p + `cache.default.ignore_cookies: cookie name "a=b" is not valid`},
		{"bad prefix", settingsWith("cache.articles.prefix", "my app"),
			p + `cache.articles.prefix: Prefix "my app" must match ^[A-Za-z0-9_.-]{1,64}$`},
		{"bad bool", settingsWith("cache.articles.vary_authorization", "maybe"),
			p + `cache.articles.vary_authorization: bad boolean "maybe" (want true/false, yes/no, on/off or 1/0)`},
		{"bad url", settingsWith("cache.articles.backend", "redis://u:s3cr3tpw@h:port/0"),
			p + `cache.articles.backend: bad backend URL: invalid port ":port" after host`},
		{"no scheme", settingsWith("cache.articles.backend", "127.0.0.1:6379"),
			p + `cache.articles.backend: bad backend URL: first path segment in URL cannot contain colon`},
		{"no scheme path", settingsWith("cache.articles.backend", "localhost"),
			p + `cache.articles.backend: backend URL has no scheme (want one of ` + bridge.SchemeList() + `)`},
		{"unknown scheme", settingsWith("cache.articles.backend", "mongodb://h/0"),
			p + `cache.articles.backend: unknown backend scheme "mongodb" (want one of ` + bridge.SchemeList() + `)`},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.s)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3tpw") {
				t.Fatalf("error leaks the URL's password: %s", err)
			}
			// New reports the same error and opens nothing.
			c, err2 := New(tc.s)
			if c != nil || err2 == nil || err2.Error() != tc.want {
				t.Fatalf("New = %v, %v", c, err2)
			}
		})
		if prev, ok := seen[tc.want]; ok {
			t.Errorf("rows %q and %q test the same message", prev, tc.name)
		}
		seen[tc.want] = tc.name
	}
}

func TestConfigFromSettingsWraps(t *testing.T) {
	_, err := Parse(settingsWith("cache.articles.statuses", "2OO"))
	if !errors.Is(err, strconv.ErrSyntax) {
		t.Fatalf("strconv's error is not wrapped: %v", err)
	}
	_, err = Parse(settingsWith("cache.articles.ttl", "ten"))
	inner := errors.Unwrap(errors.Unwrap(err))
	if inner == nil || inner.Error() != `time: invalid duration "ten"` {
		t.Fatalf("ParseDuration's error is not wrapped: %v", err)
	}
}

func TestConfigFromSettingsReportsAllErrors(t *testing.T) {
	_, err := Parse(settingsWith(
		"cache.short.ttl", "-1s",
		"cache.articles.ttl", "ten",
		"cache.nope", "x",
	))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"cache.articles.ttl: bad duration", "cache.nope: unknown key", "cache.short.ttl: negative duration"}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "routecache: settings: "+w) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestConfigFromSettingsValues(t *testing.T) {
	s := map[string]string{
		" cache.regions ":                   " articles, short ,api-v1.eu ",
		"cache.default.stale":               "1m",
		"cache.default.statuses":            "200, 404",
		"cache.default.vary_headers":        "Accept-Language",
		"cache.articles.backend":            " memory://?max_bytes=16MiB ",
		"cache.articles.ttl":                "10m",
		"cache.articles.fill_timeout":       "5s",
		"cache.articles.prefix":             "myapp",
		"cache.articles.max_entry_bytes":    "512KiB",
		"cache.articles.statuses":           "200,301\n404",
		"cache.articles.vary_headers":       "\nAccept-Language,\nAccept-Encoding",
		"cache.articles.vary_cookies":       "lang",
		"cache.articles.ignore_cookies":     "_ga, _gid",
		"cache.articles.vary_authorization": "Yes",
		"cache.articles.compress":           "on",
		"cache.short.ttl":                   "30s",
		"cache.short.stale":                 "0s", // overrides the default
		"cache.short.statuses":              "",   // back to the zero value: only 200
		"cache.api-v1.eu.max_entry_bytes":   "2048",
		"pyramid.reload_templates":          "true", // not ours: ignored
		"cache":                             "ignored too",
	}
	cfg, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]core.RegionConfig{
		"articles": {
			Backend: "memory://?max_bytes=16MiB", TTL: 10 * time.Minute, Stale: time.Minute,
			FillTimeout: 5 * time.Second, Prefix: "myapp", MaxEntryBytes: 512 << 10,
			Statuses:    []int{200, 301, 404},
			VaryHeaders: []string{"Accept-Language", "Accept-Encoding"},
			VaryCookies: []string{"lang"}, IgnoreCookies: []string{"_ga", "_gid"},
			VaryAuthorization: true, Compress: true,
		},
		"short": {TTL: 30 * time.Second, VaryHeaders: []string{"Accept-Language"}},
		"api-v1.eu": {
			Stale: time.Minute, Statuses: []int{200, 404}, VaryHeaders: []string{"Accept-Language"},
			MaxEntryBytes: 2048,
		},
	}
	if !reflect.DeepEqual(cfg.Regions, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg.Regions, want)
	}
	// The default's slices are copied, not shared between regions.
	cfg.Regions["short"].VaryHeaders[0] = "X"
	if cfg.Regions["api-v1.eu"].VaryHeaders[0] != "Accept-Language" {
		t.Fatal("regions share a default list")
	}

	c, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Regions(); !reflect.DeepEqual(got, []string{"api-v1.eu", "articles", "short"}) {
		t.Fatalf("regions %v", got)
	}
	r, _ := c.Region("short")
	if rc := r.Config(); rc.TTL != 30*time.Second || rc.Stale != 0 || rc.Backend != "memory://" ||
		rc.MaxEntryBytes != core.DefaultMaxEntryBytes || !reflect.DeepEqual(rc.Statuses, []int{200}) {
		t.Fatalf("short: %+v", rc)
	}
}

// Only cache.regions: every region gets RegionConfig's documented defaults.
func TestConfigFromSettingsDefaults(t *testing.T) {
	c, err := New(map[string]string{"cache.regions": "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, _ := c.Region("a")
	rc := r.Config()
	if rc.TTL != core.DefaultTTL || rc.Stale != 0 || rc.FillTimeout != core.DefaultFillTimeout || rc.Prefix != core.DefaultPrefix ||
		rc.MaxEntryBytes != core.DefaultMaxEntryBytes || rc.Backend != "memory://" || rc.VaryAuthorization {
		t.Fatalf("defaults not applied: %+v", rc)
	}
}

func TestSettingsEmptyValueResetsDefault(t *testing.T) {
	cfg, err := Parse(settingsWith(
		"cache.default.ttl", "1m",
		"cache.default.vary_authorization", "on",
		"cache.default.backend", "memory://?max_bytes=1MiB",
		"cache.short.ttl", "",
		"cache.short.vary_authorization", "",
		"cache.short.backend", "",
	))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Regions["articles"]; a.TTL != time.Minute || !a.VaryAuthorization || a.Backend != "memory://?max_bytes=1MiB" {
		t.Fatalf("articles %+v", a)
	}
	if s := cfg.Regions["short"]; s.TTL != 0 || s.VaryAuthorization || s.Backend != "" {
		t.Fatalf("short %+v", s)
	}
}

func TestSettingsBools(t *testing.T) {
	for v, want := range map[string]bool{
		"true": true, "TRUE": true, "1": true, "yes": true, "On": true,
		"false": false, "0": false, "no": false, "off": false, "": false,
	} {
		cfg, err := Parse(settingsWith("cache.articles.vary_authorization", v))
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got := cfg.Regions["articles"].VaryAuthorization; got != want {
			t.Errorf("%q = %v, want %v", v, got, want)
		}
	}
}

// Errors New finds (here a memory:// option) come back from New.
func TestFromSettingsNewError(t *testing.T) {
	_, err := New(settingsWith("cache.articles.backend", "memory://?size=1"))
	if err == nil || !strings.HasPrefix(err.Error(), `routecache: region "articles": backend`) ||
		!strings.Contains(err.Error(), `unknown option "size"`) {
		t.Fatalf("got %v", err)
	}
}

func TestSettingsFromEnv(t *testing.T) {
	env := []string{
		"HOME=/root",
		"ROUTECACHE_REGIONS=articles, api-v1.eu,Short",
		"ROUTECACHE_ARTICLES_TTL=10m",
		"ROUTECACHE_ARTICLES_MAX_ENTRY_BYTES=2MiB",
		"ROUTECACHE_ARTICLES_VARY_HEADERS=Accept-Language",
		"routecache_articles_ttl=1s", // prefix is case-sensitive: ignored
		"ROUTECACHE_API_V1_EU_BACKEND=redis://h:1/0",
		"ROUTECACHE_SHORT_STALE=", // empty value kept: resets to the zero value
		"ROUTECACHE_short_Fill_Timeout=3s",
		"ROUTECACHE_DEFAULT_STATUSES=200,404",
		"ROUTECACHE_OTHER_TTL=1m",       // not listed: lower-cased, reported by Parse
		"ROUTECACHE_TEST_REDIS=1.2.3.4", // no option suffix: ignored
		"ROUTECACHE_TTL=1m",             // no region: ignored
		"ROUTECACHE_ARTICLES_TTL=20m",   // duplicate: the first wins
		"ROUTECACHE_NOEQUALS",
	}
	got := FromEnv(env)
	want := map[string]string{
		"cache.regions":                  "articles, api-v1.eu,Short",
		"cache.articles.ttl":             "10m",
		"cache.articles.max_entry_bytes": "2MiB",
		"cache.articles.vary_headers":    "Accept-Language",
		"cache.api-v1.eu.backend":        "redis://h:1/0",
		"cache.Short.stale":              "",
		"cache.Short.fill_timeout":       "3s",
		"cache.default.statuses":         "200,404",
		"cache.other.ttl":                "1m",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	_, err := Parse(got)
	if err == nil || err.Error() != `routecache: settings: cache.other.ttl: region "other" is not listed in cache.regions (articles, api-v1.eu, Short)` {
		t.Fatalf("got %v", err)
	}
}

func TestSettingsFromEnvWithoutRegions(t *testing.T) {
	// Regions listed in a file; the environment overrides one of them.
	got := FromEnv([]string{"ROUTECACHE_ARTICLES_TTL=1m", "ROUTECACHE_MY_REGION_STALE=5s"})
	want := map[string]string{"cache.articles.ttl": "1m", "cache.my_region.stale": "5s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	// Two listed names with one env form: neither is picked.
	got = FromEnv([]string{"ROUTECACHE_REGIONS=a-b,a.b", "ROUTECACHE_A_B_TTL=1m"})
	if got["cache.a_b.ttl"] != "1m" || len(got) != 2 {
		t.Fatalf("ambiguous: %v", got)
	}
}

func TestMergeSettings(t *testing.T) {
	file := map[string]string{"cache.regions": "articles", "cache.articles.ttl": "10m", "app.debug": "true"}
	env := FromEnv([]string{"ROUTECACHE_ARTICLES_TTL=30s"})
	got := Merge(file, nil, env, map[string]string{" cache.articles.stale ": "1m"})
	want := map[string]string{"cache.regions": "articles", "cache.articles.ttl": "30s", "app.debug": "true", "cache.articles.stale": "1m"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	if file["cache.articles.ttl"] != "10m" {
		t.Fatal("Merge modified its input")
	}
	cfg, err := Parse(got)
	if err != nil || cfg.Regions["articles"].TTL != 30*time.Second {
		t.Fatalf("%v %+v", err, cfg)
	}
}

const sampleSettingsFile = `# production.ini
[app:main]
use = egg:myapp
pyramid.reload_templates = false

; routecache
cache.regions =
    articles,
    short
cache.default.stale = 1m
cache.articles.backend = memory://?max_bytes=16MiB
cache.articles.ttl = 10m
cache.articles.vary_headers =
    Accept-Language
    # commented-out item
    Accept-Encoding

cache.short.ttl = 5s

[server:main]
use = egg:waitress#main
listen = localhost:6543

[app:main]
cache.short.ttl = 30s
`

func TestParseSettingsFile(t *testing.T) {
	got, err := parseSettingsFile("production.ini", []byte(sampleSettingsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"use":                         "egg:waitress#main",
		"pyramid.reload_templates":    "false",
		"cache.regions":               "articles,\nshort",
		"cache.default.stale":         "1m",
		"cache.articles.backend":      "memory://?max_bytes=16MiB",
		"cache.articles.ttl":          "10m",
		"cache.articles.vary_headers": "Accept-Language\nAccept-Encoding",
		"cache.short.ttl":             "30s", // the later section wins
		"listen":                      "localhost:6543",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	cfg, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Regions["articles"]
	if a.TTL != 10*time.Minute || a.Stale != time.Minute || !reflect.DeepEqual(a.VaryHeaders, []string{"Accept-Language", "Accept-Encoding"}) {
		t.Fatalf("articles %+v", a)
	}
	if s := cfg.Regions["short"]; s.TTL != 30*time.Second || s.Stale != time.Minute {
		t.Fatalf("short %+v", s)
	}
}

func TestParseSettingsFileDetails(t *testing.T) {
	got, err := parseSettingsFile("x.ini", []byte("\uFEFFa=1\r\nb =  x = y  \r\n\tmore\r\n\r\n\t\r\n\tstill b\nc=\n[s]\n  ; indented comment\nd = #not a comment"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "1", "b": "x = y\nmore\nstill b", "c": "", "d": "#not a comment"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
}

func TestParseSettingsFileErrors(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"continuation first", "  cache.regions = a\n", `routecache: settings: f.ini:1: indented line "cache.regions = a" continues no key`},
		{"continuation after section", "a = 1\n[app:main]\n\n\tb\n", `routecache: settings: f.ini:4: indented line "b" continues no key`},
		{"bad section", "# c\n[app:main\n", `routecache: settings: f.ini:2: bad section header "[app:main" (want [name])`},
		{"empty section", "[]\n", `routecache: settings: f.ini:1: bad section header "[]" (want [name])`},
		{"no equals", "a = 1\n\ncache.regions articles\n", `routecache: settings: f.ini:3: want "key = value", got "cache.regions articles"`},
		{"empty key", "a = 1\n= 2\n", `routecache: settings: f.ini:2: empty key before '='`},
		{"long line", strings.Repeat("x", 100), `routecache: settings: f.ini:1: want "key = value", got "` + strings.Repeat("x", 60) + `"...`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseSettingsFile("f.ini", []byte(tc.text))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestLoadSettingsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.ini")
	if err := os.WriteFile(path, []byte(sampleSettingsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Merge(m, FromEnv([]string{"ROUTECACHE_SHORT_TTL=45s"})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, _ := c.Region("short")
	if r.Config().TTL != 45*time.Second {
		t.Fatalf("short TTL %v", r.Config().TTL)
	}

	bad := filepath.Join(dir, "bad.ini")
	if err := os.WriteFile(bad, []byte("[app:main]\ncache.regions = a\noops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil || err.Error() != `routecache: settings: `+bad+`:3: want "key = value", got "oops"` {
		t.Fatalf("got %v", err)
	}

	missing := filepath.Join(dir, "missing.ini")
	_, err = LoadFile(missing)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "routecache: settings: open "+missing) {
		t.Fatalf("got %v", err)
	}
}

func FuzzSettings(f *testing.F) {
	f.Add(sampleSettingsFile)
	f.Add("cache.regions = articles, short\ncache.articles.ttl = 10m\ncache.short.ttl = 30s\n")
	f.Add("[app:main]\ncache.regions = a\ncache.default.statuses = 200, 404\ncache.a.vary_headers =\n  Accept\n  Accept-Language\ncache.a.vary_authorization = yes\n")
	f.Add("cache.regions = api-v1.eu\ncache.api-v1.eu.max_entry_bytes = 1MiB\ncache.api-v1.eu.prefix = app1\ncache.api-v1.eu.fill_timeout = 2s\n")
	f.Add("cache.regions = r\ncache.r.backend = redis://user:pw@127.0.0.1:6379/0?pool_size=8\ncache.r.vary_cookies = lang\ncache.r.ignore_cookies = _ga,_gid\n")
	f.Add("cache.regions = a,b\ncache.a.ttl = -1s\ncache.b.statuses = 206\n[x\n")
	f.Add("ROUTECACHE_REGIONS=a,b-c\nROUTECACHE_B_C_TTL=1m\nROUTECACHE_DEFAULT_STALE=5s\n")
	f.Add("cache.regions = a\n\tb\ncache.a.ttl =\ncache.a.stale = 0\n; c\n# d\n")
	f.Fuzz(func(t *testing.T, text string) {
		if m, err := parseSettingsFile("fuzz.ini", []byte(text)); err != nil {
			if !strings.HasPrefix(err.Error(), "routecache: settings: fuzz.ini:") {
				t.Fatalf("file error without file name: %v", err)
			}
		} else {
			checkFuzzSettings(t, m)
		}
		// The same text read as an environment, one variable a line.
		checkFuzzSettings(t, FromEnv(strings.Split(text, "\n")))
	})
}

// checkFuzzSettings: Parse never panics, is deterministic, and
// whatever it accepts, New accepts too (backends swapped for a small
// memory store so that the fuzzer opens no connection).
func checkFuzzSettings(t *testing.T, m map[string]string) {
	cfg, err := Parse(m)
	cfg2, err2 := Parse(m)
	if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) || !reflect.DeepEqual(cfg, cfg2) {
		t.Fatalf("not deterministic: %v / %v", err, err2)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "routecache: settings: cache.") {
				t.Fatalf("error line does not name a key: %q", line)
			}
		}
		return
	}
	if len(cfg.Regions) == 0 {
		t.Fatal("accepted a config without regions")
	}
	for name, rc := range cfg.Regions {
		if rc.Backend != "" {
			if err := checkSettingsBackend(rc.Backend); err != nil {
				t.Fatalf("accepted backend %q: %v", rc.Backend, err)
			}
		}
		rc.Backend = "memory://?max_bytes=64KiB"
		cfg.Regions[name] = rc
	}
	c, err := core.New(cfg)
	if err != nil {
		t.Fatalf("Parse accepted what New rejects: %v\nsettings: %q", err, m)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSettingsStaleAndLeaseOptions(t *testing.T) {
	cfg, err := Parse(map[string]string{
		"cache.regions":          "a",
		"cache.a.stale_if_error": "2m",
		"cache.a.early_refresh":  "1.5",
		"cache.a.max_refreshes":  "8",
		"cache.a.lease_ttl":      "off",
		"cache.a.lease_wait":     "300ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Regions["a"]
	if a.StaleIfError != 2*time.Minute || a.EarlyRefresh != 1.5 || a.MaxRefreshes != 8 || a.LeaseTTL != -1 || a.LeaseWait != 300*time.Millisecond {
		t.Fatalf("got %+v", a)
	}
	for key, val := range map[string]string{
		"cache.a.early_refresh": "-1", "cache.a.max_refreshes": "x", "cache.a.lease_wait": "-1s", "cache.a.stale_if_error": "soon",
	} {
		_, err := Parse(map[string]string{"cache.regions": "a", key: val})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s = %s: error %v should name the key", key, val, err)
		}
	}
}

// The HMAC secret comes from cache.secret or ROUTECACHE_SECRET, and the
// client-address opt-out from a region option.
func TestSettingsSecretAndClientIPHeaders(t *testing.T) {
	s := Merge(map[string]string{
		"cache.regions":                          "a",
		"cache.a.ignore_client_ip_headers":       "yes",
		"cache.default.ignore_client_ip_headers": "no",
	}, FromEnv([]string{"ROUTECACHE_SECRET=s3cret"}))
	cfg, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Secret) != "s3cret" || !cfg.Regions["a"].IgnoreClientIPHeaders {
		t.Fatalf("secret %q, region %+v", cfg.Secret, cfg.Regions["a"])
	}
	if _, err := Parse(map[string]string{"cache.regions": "a", "cache.a.secret": "x"}); err == nil {
		t.Fatal("a per-region secret was accepted")
	}
}

// Negative caching and the handler's Cache-Control from settings.
func TestSettingsStatusTTLAndCacheControl(t *testing.T) {
	cfg, err := Parse(map[string]string{
		"cache.regions":             "a",
		"cache.a.status_ttl":        "404:30s, 410 : 1h",
		"cache.a.use_cache_control": "on",
		"cache.a.cdn_headers":       "yes",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Regions["a"]
	if len(a.StatusTTL) != 2 || a.StatusTTL[404] != 30*time.Second || a.StatusTTL[410] != time.Hour || !a.UseCacheControl || !a.CDNHeaders {
		t.Fatalf("got StatusTTL %v UseCacheControl %v", a.StatusTTL, a.UseCacheControl)
	}
	for val, want := range map[string]string{
		"404":           "bad status_ttl item",
		"x:1s":          "bad status",
		"404:soon":      "bad duration",
		"304:1s":        "status 304 cannot be cached",
		"404:0s":        "TTL 0s must be positive",
		"404:1s,404:2s": "status 404 given twice",
	} {
		_, err := Parse(map[string]string{"cache.regions": "a", "cache.a.status_ttl": val})
		if err == nil || !strings.Contains(err.Error(), "cache.a.status_ttl") || !strings.Contains(err.Error(), want) {
			t.Errorf("status_ttl = %q: error %v, want one naming the key and saying %q", val, err, want)
		}
	}
}

// Runtime tags: the headers read as tags and the bound per entry.
func TestSettingsRuntimeTags(t *testing.T) {
	cfg, err := Parse(map[string]string{
		"cache.regions":       "a",
		"cache.a.tag_headers": "Surrogate-Key, Cache-Tag",
		"cache.a.max_tags":    "16",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Regions["a"]
	if len(a.TagHeaders) != 2 || a.TagHeaders[0] != "Surrogate-Key" || a.TagHeaders[1] != "Cache-Tag" || a.MaxTags != 16 {
		t.Fatalf("got %+v", a)
	}
	if _, err := Parse(map[string]string{"cache.regions": "a", "cache.a.max_tags": "x"}); err == nil || !strings.Contains(err.Error(), "cache.a.max_tags") {
		t.Errorf("max_tags = x: error %v should name the key", err)
	}
	if _, err := Parse(map[string]string{"cache.regions": "a", "cache.a.max_tags": "-1"}); err == nil || !strings.Contains(err.Error(), "MaxTags") {
		t.Errorf("max_tags = -1: error %v, want one naming MaxTags", err)
	}
}
