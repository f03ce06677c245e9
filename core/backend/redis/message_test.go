package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// hostile holds the bytes an escape must carry: the separators, the
// escape character, spaces, control and non-ASCII bytes.
const hostile = "a|b/c%41 d\x00e\n\xff\xfe|/%"

func eventCases() []backend.Event {
	long := strings.Repeat("k", 5000)
	return []backend.Event{
		{Counter: "rc:v:t:article:7", Kind: backend.EventTag, Name: "article:7"},
		{Counter: "rc:v:h:0123", Kind: backend.EventTag, Name: hostile, Soft: true},
		{Counter: "rc:v:r:short", Kind: backend.EventRegion, Region: "short"},
		{Counter: "rc:v:r:short", Kind: backend.EventRegion, Region: "short", Soft: true},
		{Counter: "rc:v:h:4567", Kind: backend.EventKey, Region: "articles", Name: long},
		{Counter: "rc:v:k:r:/a|b", Kind: backend.EventKey, Region: "r", Name: "/a|b"},
		{Counter: "rc:v:k:r:x", Kind: backend.EventKey, Region: "r", Name: ""},
	}
}

// Every event survives the message, whatever bytes its names hold.
func TestMessageRoundTrip(t *testing.T) {
	b := &Backend{instance: "1f2e3d"}
	for _, ev := range eventCases() {
		msg := b.eventMessage(ev)
		inst, got, ok := ParseMessage(msg)
		if !ok || inst != b.instance || got != ev {
			t.Errorf("message %q\n got %q %+v %v\nwant %q %+v", msg, inst, got, ok, b.instance, ev)
		}
	}
}

// A receiver of the previous release cuts the message at its first '|':
// it must find the counter there, and an instance that is not its own.
func TestMessagePreviousReceiver(t *testing.T) {
	b := &Backend{instance: "1f2e3d"}
	for _, ev := range eventCases() {
		msg := b.eventMessage(ev)
		inst, counter, ok := strings.Cut(msg, "|")
		if !ok || counter != ev.Counter {
			t.Errorf("message %q: a previous receiver reads counter %q, want %q", msg, counter, ev.Counter)
		}
		if inst == b.instance || inst == "other" {
			t.Errorf("message %q: a previous receiver reads instance %q", msg, inst)
		}
	}
}

// Messages of the previous format, and heads a later release may send or
// that are damaged, still name the counter to drop.
func TestMessageTolerated(t *testing.T) {
	for _, tc := range []struct {
		payload, inst string
		want          backend.Event
		ok            bool
	}{
		{"1f2e3d|rc:v:t:x", "1f2e3d", backend.Event{Counter: "rc:v:t:x"}, true},
		{"1f2e3d|rc:v:k:r:a|b", "1f2e3d", backend.Event{Counter: "rc:v:k:r:a|b"}, true},
		{"1f2e3d/q/r/n|c", "1f2e3d", backend.Event{Counter: "c"}, true},     // unknown kind
		{"1f2e3d/t/|c", "1f2e3d", backend.Event{Counter: "c"}, true},        // missing field
		{"1f2e3d/t//bad%4|c", "1f2e3d", backend.Event{Counter: "c"}, true},  // cut escape
		{"1f2e3d/t//bad%zz|c", "1f2e3d", backend.Event{Counter: "c"}, true}, // bad escape
		{"1f2e3d/k/r/n/later/fields|c", "1f2e3d", backend.Event{Counter: "c", Kind: backend.EventKey, Region: "r", Name: "n"}, true},
		{"no separator", "", backend.Event{}, false},
	} {
		inst, got, ok := ParseMessage(tc.payload)
		if inst != tc.inst || got != tc.want || ok != tc.ok {
			t.Errorf("ParseMessage(%q) = %q %+v %v, want %q %+v %v", tc.payload, inst, got, ok, tc.inst, tc.want, tc.ok)
		}
	}
}

func FuzzMessage(f *testing.F) {
	f.Add(uint8(1), "r", hostile, "rc:v:t:x", false)
	f.Add(uint8(3), "articles", "/a", "rc:v:h:00", true)
	f.Fuzz(func(t *testing.T, kind uint8, region, name, counter string, soft bool) {
		ev := backend.Event{Counter: counter, Kind: backend.EventKind(kind%3 + 1), Region: region, Name: name, Soft: soft}
		b := &Backend{instance: "ab"}
		msg := b.eventMessage(ev)
		if strings.Contains(counter, "|") && !strings.HasPrefix(msg, "ab/") {
			t.Fatalf("message %q", msg)
		}
		inst, got, ok := ParseMessage(msg)
		if !ok || inst != "ab" || got != ev {
			t.Fatalf("message %q: got %q %+v %v, want %+v", msg, inst, got, ok, ev)
		}
		_, _, _ = ParseMessage(name) // any payload parses without panicking
	})
}

// BumpEvent bumps the counter and publishes the event in the message, on
// a single server and on a cluster (where the script runs on the
// counter's node and PUBLISH reaches every node's subscribers).
func TestBumpEventPublishes(t *testing.T) {
	for _, tc := range []struct{ name, env, scheme, path string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://", "/0"},
		{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.scheme + backendtest.Server(t, tc.env) + tc.path + "?timeout=5s"
			be, err := backend.Open(raw, backend.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			b := be.(*Backend)
			ctx := context.Background()
			sub := b.Client().Subscribe(ctx, InvalidationChannel)
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			prefix := "evtest" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
			want := []backend.Event{
				{Counter: prefix + ":v:t:a", Kind: backend.EventTag, Name: hostile},
				{Counter: prefix + ":v:t:b", Kind: backend.EventTag, Name: "b", Soft: true},
				{Counter: prefix + ":v:k:r:/x", Kind: backend.EventKey, Region: "r", Name: "/x"},
				{Counter: prefix + ":v:r:r", Kind: backend.EventRegion, Region: "r"},
			}
			for _, ev := range want {
				vals := []uint64{0}
				if err := be.Counters(ctx, []string{ev.Counter}, vals); err != nil {
					t.Fatal(err)
				}
				before := vals[0]
				if err := b.BumpEvent(ctx, ev); err != nil {
					t.Fatal(err)
				}
				if err := be.Counters(ctx, []string{ev.Counter}, vals); err != nil || vals[0] == 0 || vals[0] == before {
					t.Fatalf("%+v: counter %d then %d (%v)", ev, before, vals[0], err)
				}
				if ev.Soft {
					marks := []backend.SoftMark{{}}
					if err := b.SoftMarks(ctx, []string{ev.Counter}, marks); err != nil || marks[0].New != vals[0] {
						t.Fatalf("%+v: soft mark %+v, counter %d (%v)", ev, marks[0], vals[0], err)
					}
				}
			}
			// A cluster publishes from the node of the counter (of the
			// soft mark, for a soft bump): messages from different nodes
			// may arrive in any order.
			pending := map[string]backend.Event{}
			for _, ev := range want {
				pending[ev.Counter] = ev
			}
			for len(pending) > 0 {
				msg, err := sub.ReceiveTimeout(ctx, 30*time.Second) // a bound for a loaded machine
				if err != nil {
					t.Fatalf("%d messages missing: %v", len(pending), err)
				}
				m, ok := msg.(*redis.Message)
				if !ok || !strings.Contains(m.Payload, "|"+prefix+":") {
					continue // another test's
				}
				inst, got, ok := ParseMessage(m.Payload)
				if want, found := pending[got.Counter]; !ok || !found || inst != b.Instance() || got != want {
					t.Fatalf("message %q: %q %+v, want %q %+v", m.Payload, inst, got, b.Instance(), want)
				}
				delete(pending, got.Counter)
			}
		})
	}
}
