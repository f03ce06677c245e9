package settings_test

import (
	"fmt"

	"github.com/routecache/routecache/core/settings"
)

// New builds the regions from Pyramid-style settings: the map an
// application reads from its .ini file (settings.LoadFile) and the
// environment (settings.FromEnv), merged with settings.Merge.
// Keys outside "cache." belong to the application and are ignored;
// mistakes under "cache." are errors that name the key.
func ExampleNew() {
	s := map[string]string{
		"pyramid.reload_templates": "false", // not a cache key: ignored
		"cache.regions":            "articles, short",
		"cache.default.stale":      "1m", // every region, unless it sets its own
		"cache.articles.ttl":       "10m",
		"cache.articles.statuses":  "200, 404",
		"cache.short.ttl":          "30s",
		"cache.short.stale":        "0s",
	}
	rc, err := settings.New(s)
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	for _, name := range rc.Regions() {
		r, _ := rc.Region(name)
		cfg := r.Config()
		fmt.Printf("%s: ttl=%v stale=%v statuses=%v backend=%s\n", name, cfg.TTL, cfg.Stale, cfg.Statuses, cfg.Backend)
	}

	s["cache.articles.ttl"] = "ten"
	_, err = settings.New(s)
	fmt.Println(err)
	// Output:
	// articles: ttl=10m0s stale=1m0s statuses=[200 404] backend=memory://
	// short: ttl=30s stale=0s statuses=[200] backend=memory://
	// routecache: settings: cache.articles.ttl: bad duration "ten" (want a Go duration such as 30s, 10m or 1h30m): time: invalid duration "ten"
}
