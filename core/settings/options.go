package settings

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/internal/bridge"
)

// settingsOptions lists the per-region option names, in documentation order.
var settingsOptions = []string{
	"backend", "ttl", "stale", "stale_if_error", "early_refresh", "max_refreshes",
	"fill_timeout", "lease_ttl", "lease_wait", "prefix", "max_entry_bytes",
	"statuses", "vary_headers", "vary_cookies", "ignore_cookies", "vary_authorization",
	"soft_invalidation", "ignore_client_ip_headers", "canonical_query",
	"status_ttl", "use_cache_control", "cdn_headers", "compress",
	"tag_headers", "max_tags",
}

// setter sets one RegionConfig field to a parsed value.
type setter = func(*core.RegionConfig)

// optionParser parses an option's value into the setter of its field.
type optionParser func(v string) (setter, error)

// optionParsers holds each option's parser (settingsOptions, by name).
var optionParsers = map[string]optionParser{
	"backend":                  field(parseSettingsBackend, func(rc *core.RegionConfig) *string { return &rc.Backend }),
	"ttl":                      field(parseSettingsDuration, func(rc *core.RegionConfig) *time.Duration { return &rc.TTL }),
	"stale":                    field(parseSettingsDuration, func(rc *core.RegionConfig) *time.Duration { return &rc.Stale }),
	"stale_if_error":           field(parseSettingsDuration, func(rc *core.RegionConfig) *time.Duration { return &rc.StaleIfError }),
	"fill_timeout":             field(parseSettingsDuration, func(rc *core.RegionConfig) *time.Duration { return &rc.FillTimeout }),
	"lease_wait":               field(parseSettingsDuration, func(rc *core.RegionConfig) *time.Duration { return &rc.LeaseWait }),
	"lease_ttl":                field(parseSettingsLeaseTTL, func(rc *core.RegionConfig) *time.Duration { return &rc.LeaseTTL }),
	"early_refresh":            field(parseSettingsFloat, func(rc *core.RegionConfig) *float64 { return &rc.EarlyRefresh }),
	"max_refreshes":            field(parseSettingsInt, func(rc *core.RegionConfig) *int { return &rc.MaxRefreshes }),
	"max_tags":                 field(parseSettingsInt, func(rc *core.RegionConfig) *int { return &rc.MaxTags }),
	"prefix":                   field(parseSettingsString, func(rc *core.RegionConfig) *string { return &rc.Prefix }),
	"max_entry_bytes":          field(parseSettingsBytes, func(rc *core.RegionConfig) *int64 { return &rc.MaxEntryBytes }),
	"statuses":                 field(parseSettingsStatuses, func(rc *core.RegionConfig) *[]int { return &rc.Statuses }),
	"status_ttl":               field(parseSettingsStatusTTL, func(rc *core.RegionConfig) *map[int]time.Duration { return &rc.StatusTTL }),
	"tag_headers":              field(parseSettingsList, func(rc *core.RegionConfig) *[]string { return &rc.TagHeaders }),
	"vary_headers":             field(parseSettingsList, func(rc *core.RegionConfig) *[]string { return &rc.VaryHeaders }),
	"vary_cookies":             field(parseSettingsList, func(rc *core.RegionConfig) *[]string { return &rc.VaryCookies }),
	"ignore_cookies":           field(parseSettingsList, func(rc *core.RegionConfig) *[]string { return &rc.IgnoreCookies }),
	"vary_authorization":       field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.VaryAuthorization }),
	"soft_invalidation":        field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.SoftInvalidation }),
	"ignore_client_ip_headers": field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.IgnoreClientIPHeaders }),
	"canonical_query":          field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.CanonicalQuery }),
	"use_cache_control":        field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.UseCacheControl }),
	"cdn_headers":              field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.CDNHeaders }),
	"compress":                 field(parseSettingsBool, func(rc *core.RegionConfig) *bool { return &rc.Compress }),
}

// field is the parser of an option whose value parse reads and whose
// field at returns. A setter may set the field of several regions (a
// cache.default option): each gets its own copy of a list or map.
func field[T any](parse func(string) (T, error), at func(*core.RegionConfig) *T) optionParser {
	return func(v string) (setter, error) {
		x, err := parse(v)
		if err != nil {
			return nil, err
		}
		return func(rc *core.RegionConfig) { *at(rc) = cloneValue(x) }, nil
	}
}

// cloneValue copies the lists and maps an option's value may be.
func cloneValue[T any](x T) T {
	switch v := any(x).(type) {
	case []string:
		return any(slices.Clone(v)).(T)
	case []int:
		return any(slices.Clone(v)).(T)
	case map[int]time.Duration:
		return any(maps.Clone(v)).(T)
	}
	return x
}

func isSettingsOption(opt string) bool {
	_, ok := optionParsers[opt]
	return ok
}

// parseSettingsValue parses one option's value into a setter of the
// corresponding RegionConfig field. The setter is checked against the
// same rules New applies (normalize), on a config holding only that
// field, so a value accepted here is never rejected by New for itself.
func parseSettingsValue(opt, v string) (setter, error) {
	parse, ok := optionParsers[opt]
	if !ok {
		return nil, fmt.Errorf("unknown option %q", opt) // unreachable: checked by the caller
	}
	set, err := parse(v)
	if err != nil {
		return nil, err
	}
	var one core.RegionConfig
	set(&one)
	if err := bridge.NormalizeRegion(&one); err != nil {
		return nil, err
	}
	return set, nil
}

// parseSettingsString is the value as it is.
func parseSettingsString(v string) (string, error) { return v, nil }

// parseSettingsBackend is a backend URL, checked (checkSettingsBackend)
// unless "" (the default).
func parseSettingsBackend(v string) (string, error) {
	if v != "" {
		if err := checkSettingsBackend(v); err != nil {
			return "", err
		}
	}
	return v, nil
}

// parseSettingsDuration reads a Go duration; "" is 0 (the field's default).
func parseSettingsDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want a Go duration such as 30s, 10m or 1h30m): %w", v, err)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q (want 0 or more)", v)
	}
	return d, nil
}

// parseSettingsLeaseTTL is a duration, or "off": -1 (no leases).
func parseSettingsLeaseTTL(v string) (time.Duration, error) {
	if v == "off" {
		return -1, nil
	}
	return parseSettingsDuration(v)
}

// parseSettingsFloat reads a number; "" is 0.
func parseSettingsFloat(v string) (float64, error) {
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", v)
	}
	return f, nil
}

// parseSettingsInt reads an integer; "" is 0.
func parseSettingsInt(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("bad integer %q", v)
	}
	return n, nil
}

// parseSettingsBytes reads a size (512KiB, 1MiB, 2MB or plain bytes);
// "" is 0.
func parseSettingsBytes(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	return bridge.ParseBytes(v)
}

// parseSettingsStatuses reads a list of status codes.
func parseSettingsStatuses(v string) ([]int, error) {
	items, err := parseSettingsList(v)
	if err != nil {
		return nil, err
	}
	var codes []int
	for _, it := range items {
		n, err := strconv.Atoi(it)
		if err != nil {
			return nil, fmt.Errorf("bad status %q: %w", it, err)
		}
		codes = append(codes, n)
	}
	return codes, nil
}

// parseSettingsStatusTTL reads "404:30s, 410:1h": statuses with their own
// TTLs, each status once.
func parseSettingsStatusTTL(v string) (map[int]time.Duration, error) {
	items, err := parseSettingsList(v)
	if err != nil {
		return nil, err
	}
	ttls := map[int]time.Duration{}
	for _, it := range items {
		code, d, ok := strings.Cut(it, ":")
		if !ok {
			return nil, fmt.Errorf("bad status_ttl item %q (want status:duration, such as 404:30s)", it)
		}
		n, err := strconv.Atoi(strings.TrimSpace(code))
		if err != nil {
			return nil, fmt.Errorf("bad status %q: %w", code, err)
		}
		if _, dup := ttls[n]; dup {
			return nil, fmt.Errorf("status %d given twice", n)
		}
		if ttls[n], err = parseSettingsDuration(strings.TrimSpace(d)); err != nil {
			return nil, err
		}
	}
	return ttls, nil
}

// parseSettingsBool reads true/false, yes/no, on/off, 1/0 in any case;
// "" is false.
func parseSettingsBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0", "":
		return false, nil
	}
	return false, fmt.Errorf("bad boolean %q (want true/false, yes/no, on/off or 1/0)", v)
}

// parseSettingsList splits a list value on commas and newlines (the
// newlines of ini continuation lines), trimming each item. A line may end
// with a comma when another line follows. "" is an empty list; an empty
// item (",", "a,,b", "a,") is an error.
func parseSettingsList(v string) ([]string, error) {
	var lines []string
	for _, ln := range strings.Split(v, "\n") {
		if ln = strings.TrimSpace(ln); ln != "" {
			lines = append(lines, ln)
		}
	}
	var out []string
	for i, ln := range lines {
		if i < len(lines)-1 {
			ln = strings.TrimSuffix(ln, ",")
		}
		for _, it := range strings.Split(ln, ",") {
			it = strings.TrimSpace(it)
			if it == "" {
				return nil, fmt.Errorf("empty item in list %q", v)
			}
			out = append(out, it)
		}
	}
	return out, nil
}

// checkSettingsBackend runs the checks openBackend makes before it opens
// anything (URL syntax, known scheme), so such mistakes name the settings
// key. The URL is not quoted back: it may hold a password.
func checkSettingsBackend(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return fmt.Errorf("bad backend URL: %w", err)
	}
	if u.Scheme == "" {
		return fmt.Errorf("backend URL has no scheme (want one of %s)", bridge.SchemeList())
	}
	if !bridge.KnownScheme(u.Scheme) {
		return fmt.Errorf("unknown backend scheme %q (want one of %s)", u.Scheme, bridge.SchemeList())
	}
	return nil
}
