package core_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/routecache/routecache/core"
)

// Each entry a miss stores is built in an allocation of its own: entries
// filled one after another, with bodies and headers of every size (some
// beyond what that allocation holds), replay exactly what their own
// misses sent, whatever was filled after them.
func TestMissEntriesAreIndependent(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{}, core.Tags("item:{id}", "items"))
	handler := func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.PathValue("id"))
		h := w.Header()
		h.Set("Content-Type", "text/plain; v="+strconv.Itoa(i))
		for j := 0; j < i%6; j++ {
			h.Add("X-Extra", fmt.Sprintf("%d-%d", i, j))
		}
		if i%3 == 0 {
			h.Set("Etag", fmt.Sprintf(`"own-%d"`, i))
		}
		_, _ = w.Write([]byte(fmt.Sprintf("body %d %0*d", i, i*37, i)))
	}
	const n = 40
	first := make([]http.Header, n)
	bodies := make([]string, n)
	for i := 0; i < n; i++ {
		target := fmt.Sprintf("/items/%d", i)
		w := serveOnce(rt, target, mapParams{"id": strconv.Itoa(i)}, func(w http.ResponseWriter, r *http.Request) {
			r.SetPathValue("id", strconv.Itoa(i))
			handler(w, r)
		})
		if xc(w) != "MISS" {
			t.Fatalf("%s: X-Cache %q, want MISS", target, xc(w))
		}
		first[i], bodies[i] = w.Header().Clone(), w.Body.String()
	}
	for i := 0; i < n; i++ {
		target := fmt.Sprintf("/items/%d", i)
		w := serveOnce(rt, target, mapParams{"id": strconv.Itoa(i)}, func(http.ResponseWriter, *http.Request) {
			t.Errorf("%s: the handler ran on a hit", target)
		})
		if xc(w) != "HIT" {
			t.Fatalf("%s: X-Cache %q, want HIT", target, xc(w))
		}
		if w.Body.String() != bodies[i] {
			t.Fatalf("%s: body %q, want %q", target, w.Body.String(), bodies[i])
		}
		for _, k := range []string{"Content-Type", "X-Extra"} {
			if got, want := fmt.Sprint(w.Header()[k]), fmt.Sprint(first[i][k]); got != want {
				t.Fatalf("%s: %s %s on the hit, %s on the miss", target, k, got, want)
			}
		}
		// The validators: the handler's ETag, else the one derived from
		// this entry's own body.
		want := first[i].Get("Etag")
		if want == "" {
			want = core.StrongETag([]byte(bodies[i]))
		}
		if got := w.Header().Get("Etag"); got != want {
			t.Fatalf("%s: ETag %s, want %s", target, got, want)
		}
		if w.Header().Get("Last-Modified") == "" {
			t.Fatalf("%s: no Last-Modified", target)
		}
	}
}
