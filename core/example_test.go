package core_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core"
)

// New validates the configuration: a bad region is an error at start-up,
// never at request time.
func ExampleNew() {
	rc, err := core.New(core.Config{
		Regions: map[string]core.RegionConfig{
			"articles": {TTL: 10 * time.Minute}, // Backend "" = embedded memory
			"short":    {TTL: 30 * time.Second, Backend: "memory://?max_bytes=16MiB"},
		},
	})
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	fmt.Println(rc.Regions())

	_, err = rc.Route("nope")
	fmt.Println(err)

	_, err = core.New(core.Config{Regions: map[string]core.RegionConfig{
		"bad": {TTL: -time.Second},
	}})
	fmt.Println(err)
	// Output:
	// [articles short]
	// routecache: unknown region "nope"
	// routecache: region "bad": TTL -1s is negative
}

// Plain net/http: wrap the handler registered on a ServeMux pattern (the
// middleware reads Request.PathValue and Request.Pattern). The second
// request is answered from the cache without running the handler.
func Example() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {TTL: 5 * time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()

	cache, err := rc.Middleware("articles", core.Tags("article:{id}", "articles"))
	if err != nil {
		panic(err)
	}
	var calls atomic.Int64
	show := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q}`, r.PathValue("id"))
	})
	mux := http.NewServeMux()
	mux.Handle("GET /articles/{id}", cache(show))

	srv := httptest.NewServer(mux)
	defer srv.Close()
	for range 2 {
		res, err := http.Get(srv.URL + "/articles/42")
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Println(res.Header.Get("X-Cache"), res.StatusCode, string(body))
	}
	fmt.Println("handler calls:", calls.Load())
	// Output:
	// MISS 200 {"id":"42"}
	// HIT 200 {"id":"42"}
	// handler calls: 1
}

// InvalidateTags works from anywhere (a repository, an event consumer):
// every entry stored with the tag, in every region, stops being served.
func ExampleCache_InvalidateTags() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {},
	}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()

	cache, err := rc.Middleware("articles", core.Tags("article:{id}"))
	if err != nil {
		panic(err)
	}
	title := "First"
	mux := http.NewServeMux()
	mux.Handle("GET /articles/{id}", cache(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, title)
	})))
	get := func() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "/articles/42", nil))
		fmt.Println(w.Header().Get("X-Cache"), w.Code, strings.TrimSpace(w.Body.String()))
	}

	get()
	get()
	title = "Second"
	get() // still the cached body
	if err := rc.InvalidateTags(context.Background(), "article:42"); err != nil {
		panic(err)
	}
	get()
	get()
	// Output:
	// MISS 200 First
	// HIT 200 First
	// HIT 200 First
	// MISS 200 Second
	// HIT 200 Second
}
