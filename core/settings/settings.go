// Package settings configures routecache's regions from a flat map of
// string keys, the way Pyramid applications configure dogpile.cache
// regions in their .ini file:
//
//	cache.regions = articles, short
//	cache.default.stale = 1m
//	cache.articles.backend = redis://127.0.0.1:6379/0
//	cache.articles.ttl = 10m
//	cache.short.ttl = 30s
//
// The map can come from a file (LoadFile), from the environment
// (FromEnv), from code, or from several of them (Merge). Parse turns it
// into a core.Config; New into a *core.Cache.
package settings

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/internal/bridge"
)

const settingsPrefix = "cache."

// settingsDefaultScope is the pseudo-region whose options apply to every
// region that does not set them itself. It cannot be used as a region name.
const settingsDefaultScope = "default"

func settingsErr(key, format string, args ...any) error {
	return fmt.Errorf("routecache: settings: "+key+": "+format, args...)
}

// Parse builds a core.Config from Pyramid-style settings.
//
// Keys (whitespace around keys and values is trimmed):
//
//	cache.regions                    required: region names, comma-separated
//	cache.<region>.<option>          an option of one listed region
//	cache.default.<option>           an option for every region that does not set it
//
// Options, each mapping to the core.RegionConfig field of the same meaning:
//
//	backend             Backend: store URL, e.g. redis://127.0.0.1:6379/0
//	ttl                 TTL: Go duration (30s, 10m, 1h30m), ≥ 0
//	stale               Stale: Go duration, ≥ 0
//	stale_if_error      StaleIfError: Go duration, ≥ 0
//	early_refresh       EarlyRefresh: XFetch beta, a number ≥ 0 (1 is usual)
//	max_refreshes       MaxRefreshes: integer ≥ 0
//	fill_timeout        FillTimeout: Go duration, ≥ 0
//	lease_ttl           LeaseTTL: Go duration ≥ 0, or "off" (no leases)
//	lease_wait          LeaseWait: Go duration, ≥ 0
//	prefix              Prefix: key namespace
//	max_entry_bytes     MaxEntryBytes: size, e.g. 512KiB, 1MiB, 2MB or plain bytes
//	statuses            Statuses: comma-separated status codes, e.g. 200, 404
//	vary_headers        VaryHeaders: comma-separated header names
//	vary_cookies        VaryCookies: comma-separated cookie names
//	ignore_cookies      IgnoreCookies: comma-separated cookie names
//	vary_authorization  VaryAuthorization: true/false, yes/no, on/off, 1/0
//	soft_invalidation   SoftInvalidation: the same booleans
//	ignore_client_ip_headers  IgnoreClientIPHeaders: the same booleans
//	canonical_query     CanonicalQuery: the same booleans
//	compress            Compress: the same booleans
//	tag_headers         TagHeaders: comma-separated response header names
//	max_tags            MaxTags: integer ≥ 0
//
// One key is not a region option:
//
//	cache.secret        Config.Secret: the HMAC key for credentials in keys
//	                    (the same on every replica; from the environment,
//	                    not a file under version control)
//
// A list may also be split over several lines (as continuation lines of
// an ini file produce); a line may end with a comma. Empty list items are
// errors. An empty value sets the field's zero value, which is the default
// documented on core.RegionConfig (for example "cache.articles.ttl =" gives
// core.DefaultTTL even when cache.default.ttl is set). A region option replaces
// the cache.default one as a whole; lists are not merged.
//
// Keys that do not start with "cache." are ignored, so an application can
// pass its whole settings map. Every other problem is an error naming the
// key: a key under "cache." that is none of the above (including options of
// a region missing from cache.regions), and a value that does not parse or
// that core.New would reject. All such errors are reported together (joined, in
// key order). Checks that need the backend itself (for example a Redis
// URL's options) happen in core.New.
//
// Config.Logger and RegionConfig.Store cannot be set from settings; set
// them on the returned Config before calling core.New.
func Parse(s map[string]string) (core.Config, error) {
	keys := make(map[string]string, len(s))
	var dup []string
	for k, v := range s {
		k = strings.TrimSpace(k)
		if !strings.HasPrefix(k, settingsPrefix) {
			continue
		}
		if _, ok := keys[k]; ok {
			dup = append(dup, k)
		}
		keys[k] = strings.TrimSpace(v)
	}
	var errs []error
	sort.Strings(dup)
	for i, k := range dup {
		if i == 0 || dup[i-1] != k {
			errs = append(errs, settingsErr(k, "set more than once (keys differ only in surrounding whitespace)"))
		}
	}

	const regionsKey = settingsPrefix + "regions"
	const secretKey = settingsPrefix + "secret"
	raw, ok := keys[regionsKey]
	if !ok {
		errs = append(errs, settingsErr(regionsKey, "missing (list the region names, e.g. %q)", "cache.regions = articles, short"))
		return core.Config{}, joinSettingsErrs(errs)
	}
	names, err := parseSettingsList(raw)
	if err != nil {
		errs = append(errs, settingsErr(regionsKey, "%w", err))
		return core.Config{}, joinSettingsErrs(errs)
	}
	if len(names) == 0 {
		errs = append(errs, settingsErr(regionsKey, "no regions listed"))
	}
	listed := make(map[string]bool, len(names))
	for _, name := range names {
		switch {
		case !bridge.RegionName.MatchString(name):
			errs = append(errs, settingsErr(regionsKey, "region name %q must match %s", name, bridge.RegionName))
		case name == settingsDefaultScope:
			errs = append(errs, settingsErr(regionsKey, "region name %q is reserved for cache.default.<option>", name))
		case listed[name]:
			errs = append(errs, settingsErr(regionsKey, "region %q listed twice", name))
		}
		listed[name] = true
	}
	if len(errs) > 0 {
		return core.Config{}, joinSettingsErrs(errs)
	}

	sorted := make([]string, 0, len(keys))
	for k := range keys {
		if k != regionsKey && k != secretKey {
			sorted = append(sorted, k)
		}
	}
	sort.Strings(sorted)
	appliers := map[string][]func(*core.RegionConfig){} // region (or "default") -> setters
	for _, k := range sorted {
		rest := k[len(settingsPrefix):]
		i := strings.LastIndexByte(rest, '.')
		if i < 0 {
			errs = append(errs, settingsErr(k, "unknown key (want cache.regions, cache.secret, cache.<region>.<option> or cache.default.<option>)"))
			continue
		}
		region, opt := rest[:i], rest[i+1:]
		if !isSettingsOption(opt) {
			errs = append(errs, settingsErr(k, "unknown option %q (want one of %s)", opt, strings.Join(settingsOptions, ", ")))
			continue
		}
		if region != settingsDefaultScope && !listed[region] {
			errs = append(errs, settingsErr(k, "region %q is not listed in cache.regions (%s)", region, strings.Join(names, ", ")))
			continue
		}
		set, err := parseSettingsValue(opt, keys[k])
		if err != nil {
			errs = append(errs, settingsErr(k, "%w", err))
			continue
		}
		appliers[region] = append(appliers[region], set)
	}
	if len(errs) > 0 {
		return core.Config{}, joinSettingsErrs(errs)
	}

	cfg := core.Config{Regions: make(map[string]core.RegionConfig, len(names))}
	if v := keys[secretKey]; v != "" {
		cfg.Secret = []byte(v)
	}
	for _, name := range names {
		var rc core.RegionConfig
		for _, set := range appliers[settingsDefaultScope] {
			set(&rc)
		}
		for _, set := range appliers[name] {
			set(&rc)
		}
		cfg.Regions[name] = rc
	}
	return cfg, nil
}

// New is core.New(Parse(s)): it builds a Cache from
// Pyramid-style settings. See Parse for the keys, and
// LoadFile, FromEnv and Merge for their sources:
//
//	file, err := settings.LoadFile("production.ini")
//	...
//	rc, err := settings.New(settings.Merge(file, settings.FromEnv(os.Environ())))
func New(s map[string]string) (*core.Cache, error) {
	cfg, err := Parse(s)
	if err != nil {
		return nil, err
	}
	return core.New(cfg)
}

func joinSettingsErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// FromEnv maps environment variables to settings keys. Pass
// os.Environ() in real use; the result composes with other sources
// through Merge.
//
//	ROUTECACHE_REGIONS=articles,short   → cache.regions
//	ROUTECACHE_SECRET=…                 → cache.secret
//	ROUTECACHE_DEFAULT_<OPTION>=v       → cache.default.<option>
//	ROUTECACHE_<REGION>_<OPTION>=v      → cache.<region>.<option>
//
// <OPTION> is an option name of Parse in any case, e.g.
// ROUTECACHE_ARTICLES_MAX_ENTRY_BYTES → cache.articles.max_entry_bytes.
// <REGION> is a region name upper-cased, with '-' and '.' replaced by
// '_': region "api-v1.eu" is ROUTECACHE_API_V1_EU_TTL. It is matched
// (case-insensitively) against the regions listed in ROUTECACHE_REGIONS
// and maps to the name as written there. A region not listed there (or
// whose env form is shared by two listed names) maps to its env form
// lower-cased: ROUTECACHE_ARTICLES_TTL → cache.articles.ttl, which suits
// the usual lower-case names listed in a settings file; Parse
// reports any such key whose region is not in the final cache.regions.
//
// Variables that start with ROUTECACHE_ but do not end in _<OPTION> (such
// as ROUTECACHE_TEST_REDIS) are ignored, as are all other variables. When
// several variables map to the same key, the first in environ wins, as
// with os.Getenv.
func FromEnv(environ []string) map[string]string {
	const prefix = "ROUTECACHE_"
	out := map[string]string{}
	byEnv := map[string][]string{} // env form -> listed region names
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == prefix+"REGIONS" {
			for _, name := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' }) {
				name = strings.TrimSpace(name)
				e := settingsEnvName(name)
				if name != "" && !containsString(byEnv[e], name) {
					byEnv[e] = append(byEnv[e], name)
				}
			}
			break // the first one wins
		}
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := strings.ToUpper(k[len(prefix):])
		var key string
		switch rest {
		case "REGIONS":
			key = settingsPrefix + "regions"
		case "SECRET":
			key = settingsPrefix + "secret"
		default:
			opt := ""
			for _, o := range settingsOptions {
				suffix := "_" + strings.ToUpper(o)
				if len(rest) > len(suffix) && strings.HasSuffix(rest, suffix) && len(o) > len(opt) {
					opt = o
				}
			}
			if opt == "" {
				continue
			}
			part := rest[:len(rest)-len(opt)-1]
			region := strings.ToLower(part)
			if names := byEnv[part]; len(names) == 1 && part != "DEFAULT" {
				region = names[0]
			}
			key = settingsPrefix + region + "." + opt
		}
		if _, seen := out[key]; !seen {
			out[key] = v
		}
	}
	return out
}

// settingsEnvName is a region name's form in environment variable names.
func settingsEnvName(name string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(name))
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LoadFile reads settings from an ini-style file such as a
// Pyramid application's production.ini:
//
//	[app:main]
//	# comment
//	; comment
//	cache.regions = articles, short
//	cache.articles.backend = redis://127.0.0.1:6379/0
//	cache.articles.vary_headers =
//	    Accept-Language
//	    Accept-Encoding
//
// Lines are "key = value" (split at the first '='; key and value
// trimmed). A line starting with whitespace continues the previous value:
// it is appended after a newline, which Parse reads as a list
// separator. Lines whose first non-blank character is '#' or ';' are
// comments (there are no comments after a value: URLs may hold '#' and
// ';'); blank lines are skipped. Section headers ("[app:main]") are
// allowed and ignored: keys from all sections are merged into one map, a
// later line winning over an earlier one. Keys keep their case and there
// is no %(name)s interpolation. Errors name the file and line.
func LoadFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routecache: settings: %w", err)
	}
	return parseSettingsFile(path, data)
}

func parseSettingsFile(name string, data []byte) (map[string]string, error) {
	text := strings.TrimPrefix(string(data), "\uFEFF")
	out := map[string]string{}
	cur := "" // key that a continuation line appends to
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("routecache: settings: %s:%d: "+format, append([]any{name, line}, args...)...)
	}
	for i, ln := range strings.Split(text, "\n") {
		line := i + 1
		ln = strings.TrimSuffix(ln, "\r")
		t := strings.TrimSpace(ln)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
			continue
		case ln[0] == ' ' || ln[0] == '\t':
			if cur == "" {
				return nil, fail(line, "indented line %s continues no key", quoteSettingsLine(t))
			}
			out[cur] += "\n" + t
		case t[0] == '[':
			if len(t) < 3 || t[len(t)-1] != ']' {
				return nil, fail(line, "bad section header %s (want [name])", quoteSettingsLine(t))
			}
			cur = ""
		default:
			k, v, ok := strings.Cut(t, "=")
			if !ok {
				return nil, fail(line, "want \"key = value\", got %s", quoteSettingsLine(t))
			}
			if k = strings.TrimSpace(k); k == "" {
				return nil, fail(line, "empty key before '='")
			}
			out[k] = strings.TrimSpace(v)
			cur = k
		}
	}
	for k, v := range out {
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// quoteSettingsLine quotes a line for an error message, shortened so that
// a binary file does not produce a huge error.
func quoteSettingsLine(s string) string {
	const max = 60
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// Merge merges settings maps into a new one; for a key present in
// several maps, the later map wins. Keys are trimmed of surrounding
// whitespace first, so " cache.regions" and "cache.regions" are the same
// key. Nil maps are allowed. Typical use: a file overridden by the
// environment,
//
//	settings.Merge(fileSettings, settings.FromEnv(os.Environ()))
func Merge(maps ...map[string]string) map[string]string {
	n := 0
	for _, m := range maps {
		n += len(m)
	}
	out := make(map[string]string, n)
	for _, m := range maps {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic when keys of one map differ only in spaces
		for _, k := range keys {
			out[strings.TrimSpace(k)] = m[k]
		}
	}
	return out
}
