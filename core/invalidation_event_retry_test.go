package core_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
)

// evFlaky is a Redis backend that refuses its first bumps: the
// "evflaky://host/db?inner=S&id=N&..." scheme opens S://host/db?... with
// the control registered under N.
type evFlaky struct {
	backend.Backend
	ctl *evFlakyCtl
}

// evFlakyCtl says how many bumps to refuse and records every attempt.
type evFlakyCtl struct {
	mu       sync.Mutex
	refuse   int
	attempts []backend.Event
}

var evFlakies sync.Map // id -> *evFlakyCtl

func init() {
	backend.Register("evflaky", func(u *url.URL, opts backend.Options) (backend.Backend, error) {
		q := u.Query()
		ctl, ok := evFlakies.Load(q.Get("id"))
		if !ok {
			return nil, fmt.Errorf("evflaky: no control %q", q.Get("id"))
		}
		inner := *u
		inner.Scheme = q.Get("inner")
		q.Del("id")
		q.Del("inner")
		inner.RawQuery = q.Encode()
		be, err := backend.Open(inner.String(), opts)
		if err != nil {
			return nil, err
		}
		return &evFlaky{Backend: be, ctl: ctl.(*evFlakyCtl)}, nil
	})
}

// BumpEvent records the attempt and refuses it while refusals remain.
func (f *evFlaky) BumpEvent(ctx context.Context, ev backend.Event) error {
	f.ctl.mu.Lock()
	ev.Counter, ev.Region, ev.Name = strings.Clone(ev.Counter), strings.Clone(ev.Region), strings.Clone(ev.Name)
	f.ctl.attempts = append(f.ctl.attempts, ev)
	refuse := f.ctl.refuse > 0
	if refuse {
		f.ctl.refuse--
	}
	f.ctl.mu.Unlock()
	if refuse {
		return errors.New("evflaky: bump refused")
	}
	return f.Backend.(backend.EventBumper).BumpEvent(ctx, ev)
}

// Bump and SoftBump would lose the event: the engine must not use them on
// an EventBumper.
func (f *evFlaky) Bump(context.Context, string) error {
	return errors.New("evflaky: Bump called on an EventBumper")
}

// A bump the backend refused is queued with its event: the retried bump
// publishes the same event, which reaches another instance's hooks with
// its kind, region and name (hashed counter names included), and the
// invalidating instance reports it once, as pending.
func TestRemoteInvalidationRetried(t *testing.T) {
	for _, srv := range evServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := backendtest.Server(t, srv.env)
			prefix := evPrefix()
			id := prefix
			ctl := &evFlakyCtl{}
			evFlakies.Store(id, ctl)
			defer evFlakies.Delete(id)
			a, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {
				Backend: "evflaky://" + addr + srv.path + "?timeout=5s&inner=" + url.QueryEscape(strings.TrimSuffix(srv.scheme, "://")) + "&id=" + id, Prefix: prefix}}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b := evCaches(t, 1, srv.scheme+addr+srv.path+"?timeout=5s&near_max_bytes=1MiB", prefix)[0]
			remote := evRemote(b)
			var local []core.InvalidationEvent
			a.OnInvalidate(func(ev core.InvalidationEvent) { local = append(local, ev) })

			longTag := "tag:" + strings.Repeat("x", 300)
			oddTag := "t\x00\xff|/%"
			longKey := "/articles/" + strings.Repeat("k", 300)
			ctl.mu.Lock()
			ctl.refuse = 3 // the tag epoch's bump (a tag invalidation's first), then two retries
			ctl.mu.Unlock()
			ctx := context.Background()
			if err := a.InvalidateTagsSoft(ctx, longTag, oddTag); !errors.Is(err, core.ErrInvalidationPending) {
				t.Fatalf("InvalidateTagsSoft: %v, want ErrInvalidationPending", err)
			}
			// Queued behind the tags; waits for the worker's next attempt.
			if err := a.InvalidateKey(ctx, "r", longKey); err != nil && !errors.Is(err, core.ErrInvalidationPending) {
				t.Fatalf("InvalidateKey: %v", err)
			}
			want := []core.InvalidationEvent{
				{Kind: core.InvalidationTag, Names: []string{longTag}, Soft: true, Remote: true},
				{Kind: core.InvalidationTag, Names: []string{oddTag}, Soft: true, Remote: true},
				{Kind: core.InvalidationKey, Region: "r", Names: []string{longKey}, Remote: true},
			}
			evSame(t, evAwait(t, remote, len(want)), want)

			if len(local) < 2 || !local[0].Pending || local[0].Kind != core.InvalidationTag || local[0].Remote {
				t.Fatalf("local events %+v: want the tags reported once, pending", local)
			}
			// B may hear of the last bump before A's worker has counted it
			// applied; Close waits for the queue.
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			ctl.mu.Lock()
			defer ctl.mu.Unlock()
			// Every attempt at a counter carried the same event.
			first := map[string]backend.Event{}
			tries := map[string]int{}
			for _, ev := range ctl.attempts {
				if f, ok := first[ev.Counter]; ok && f != ev {
					t.Fatalf("retried bump of %q carried %+v, first %+v", ev.Counter, ev, f)
				} else if !ok {
					first[ev.Counter] = ev
				}
				tries[ev.Counter]++
			}
			if len(first) != 4 {
				t.Fatalf("bumps of %d counters, want 4 (the tag epoch, two tags, a key): %+v", len(first), ctl.attempts)
			}
			if tries[ctl.attempts[0].Counter] != 4 {
				t.Fatalf("the tag epoch's bump was tried %d times, want 4 (refused 3 times)", tries[ctl.attempts[0].Counter])
			}
			if st := a.Stats()["r"]; st.InvalidationRetries < 2 || st.InvalidationsPending != 0 || st.InvalidationsLost != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
