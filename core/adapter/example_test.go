package adapter_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// routeParams is a toy framework's route parameters: a map.
type routeParams map[string]string

func (p routeParams) Get(name string) (string, bool) {
	v, ok := p[name]
	return v, ok
}

// An adapter translates its framework's request into ServeRoute's
// arguments: the parameters, the route pattern and the rest of the chain.
// The handler runs on the miss only; the second request is a hit.
func Example() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {TTL: 5 * time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	rt, err := rc.Route("articles", core.Tags("article:{id}"))
	if err != nil {
		panic(err)
	}

	// The rest of the chain, as the framework would run it. Writes go to
	// the engine's ResponseWriter on a miss.
	next := func(w http.ResponseWriter, r *http.Request) error {
		if _, ok := adapter.AsResponseWriter(w); !ok {
			return errors.New("not the engine's writer")
		}
		w.Header().Set("Content-Type", "text/plain")
		_, err := fmt.Fprintf(w, "article %s", r.PathValue("id"))
		return err
	}
	for range 2 {
		req := httptest.NewRequest("GET", "/articles/42", nil)
		req.SetPathValue("id", "42")
		w := httptest.NewRecorder()
		err := adapter.ServeRoute(rt, w, req, routeParams{"id": "42"}, "/articles/:id", next)
		fmt.Println(w.Code, w.Header().Get("X-Cache"), w.Body.String(), err)
	}
	// Output:
	// 200 MISS article 42 <nil>
	// 200 HIT article 42 <nil>
}

// ErrSkipStore is how an adapter reports a request its framework marks
// as failed without an error value (an abort): the response goes out but
// is not stored, and ServeRoute returns nil.
func ExampleErrSkipStore() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"r": {TTL: time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	rt, err := rc.Route("r")
	if err != nil {
		panic(err)
	}
	aborted := func(w http.ResponseWriter, r *http.Request) error {
		_, _ = w.Write([]byte("partial"))
		return adapter.ErrSkipStore
	}
	for range 2 {
		w := httptest.NewRecorder()
		err := adapter.ServeRoute(rt, w, httptest.NewRequest("GET", "/x", nil), adapter.NoParams, "/x", aborted)
		fmt.Println(w.Header().Get("X-Cache"), w.Body.String(), err)
	}
	fmt.Println(rc.Stats()["r"].NotStored[core.NotStoredError])
	// Output:
	// MISS partial <nil>
	// MISS partial <nil>
	// 2
}

// An invalidating route runs the handler and, on a 2xx, invalidates
// before the status line is sent.
func ExampleServeInvalidator() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {TTL: time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	iv, err := rc.Invalidator(core.Tags("article:{id}"))
	if err != nil {
		panic(err)
	}
	update := func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w := httptest.NewRecorder()
	err = adapter.ServeInvalidator(iv, w, httptest.NewRequest("PUT", "/articles/42", nil), routeParams{"id": "42"}, update)
	fmt.Println(w.Code, err, rc.Stats()["articles"].Invalidations)
	// Output:
	// 204 <nil> 1
}
