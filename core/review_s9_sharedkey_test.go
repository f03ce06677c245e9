package core

import (
	"context"
	"testing"
	"time"
)

// Attack on valid's shared-key rule (5e2f0c6): it counts the entry's
// counters found among the request's names, not the request's names found
// in the entry. An entry whose counters repeat a name (a runtime tag equal
// to a declared one, or a route declaring one tag twice) then makes up for
// a name of the request it lacks: a route sharing the key, with a tag of
// its own, takes that entry although its producer never read that tag, and
// keeps answering it after the tag's invalidation completed.
func TestReviewS9SharedKeyDuplicateCounterHidesMissingTag(t *testing.T) {
	for name, dup := range map[string]struct {
		tags    []string
		runtime []string
	}{
		// Runtime tags are deduplicated against the declared ones: a guard.
		"runtime-repeats-declared": {[]string{"item:{id}"}, []string{"item:1"}},
		"declared-twice":           {[]string{"item:{id}", "item:{id}"}, nil},
		// Two placeholders that happen to hold the same value.
		"placeholders-agree": {[]string{"item:{id}", "item:{ref}"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := New(Config{Regions: map[string]RegionConfig{"r": {TTL: time.Hour}}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			x := s9Route(t, c, dup.tags...)
			z := s9Route(t, c, "item:{id}", "z:{id}")
			if w := s9ServeP(t, x, mapParams{"id": "1", "ref": "1"}, "x's", dup.runtime...); xcache(w) != "MISS" {
				t.Fatalf("x's fill: %q", xcache(w))
			}
			s9Serve(t, z, "1", "z's") // may take x's entry: z:1 was never invalidated
			if err := c.InvalidateTags(context.Background(), "z:1"); err != nil {
				t.Fatal(err)
			}
			if w := s9Serve(t, z, "1", "z's after"); w.Body.String() == "x's" {
				t.Fatalf("after z:1's invalidation completed, z answered %s %q: the entry x stored, whose producer never read z:1", xcache(w), w.Body.String())
			}
		})
	}
}
