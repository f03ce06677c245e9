package settings

import (
	"slices"
	"sort"
	"testing"
)

// Every documented option has a parser, and every parser a documented
// option: FromEnv maps variables by settingsOptions, Parse by the parsers.
func TestEveryOptionHasAParserAndNoParserIsUndocumented(t *testing.T) {
	var parsed []string
	for name := range optionParsers {
		parsed = append(parsed, name)
	}
	documented := slices.Clone(settingsOptions)
	sort.Strings(parsed)
	sort.Strings(documented)
	if !slices.Equal(parsed, documented) {
		t.Fatalf("options with parsers %v, documented %v", parsed, documented)
	}
}

// A cache.default list or map set on several regions is a copy in each:
// changing one region's does not change another's.
func TestDefaultOptionValuesAreCopiedPerRegion(t *testing.T) {
	cfg, err := Parse(settingsWith(
		"cache.default.vary_headers", "Accept",
		"cache.default.statuses", "200, 404",
		"cache.default.status_ttl", "404:30s",
	))
	if err != nil {
		t.Fatal(err)
	}
	a, s := cfg.Regions["articles"], cfg.Regions["short"]
	a.VaryHeaders[0], a.Statuses[0] = "X", 500
	a.StatusTTL[404] = 0
	if s.VaryHeaders[0] != "Accept" || s.Statuses[0] != 200 || s.StatusTTL[404] == 0 {
		t.Fatalf("regions share a default's list or map: %+v", s)
	}
}
