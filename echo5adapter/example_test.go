package echo5adapter_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
)

// An Echo v5 route cached in the "articles" region, and a PUT route that
// invalidates its tags once the update has succeeded.
func ExampleCache() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"articles": {TTL: 5 * time.Minute}, // Backend "" = embedded memory
	}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()

	titles := map[string]string{"1": "Hello"} // the "database" (a real server needs a mutex)

	e := echo.New()
	e.GET("/articles/:id", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"id": c.Param("id"), "title": titles[c.Param("id")]})
	}, echo5adapter.Cache(rc, "articles", core.Tags("article:{id}", "articles")))
	e.PUT("/articles/:id", func(c *echo.Context) error {
		var in struct {
			Title string `json:"title"`
		}
		if err := c.Bind(&in); err != nil {
			return err // an error: nothing is invalidated
		}
		titles[c.Param("id")] = in.Title
		return c.JSON(http.StatusOK, map[string]string{"id": c.Param("id"), "title": in.Title})
	}, echo5adapter.Invalidate(rc, core.Tags("article:{id}", "articles")))

	do := func(method, path, body string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		xcache := w.Header().Get("X-Cache") // MISS, HIT or BYPASS on cached routes
		if xcache == "" {
			xcache = "-"
		}
		fmt.Println(method, w.Code, xcache, strings.TrimSpace(w.Body.String()))
	}
	do("GET", "/articles/1", "")
	do("GET", "/articles/1", "")
	do("PUT", "/articles/1", `{"title":"Edited"}`)
	do("GET", "/articles/1", "")
	do("GET", "/articles/1", "")
	// Output:
	// GET 200 MISS {"id":"1","title":"Hello"}
	// GET 200 HIT {"id":"1","title":"Hello"}
	// PUT 200 - {"id":"1","title":"Edited"}
	// GET 200 MISS {"id":"1","title":"Edited"}
	// GET 200 HIT {"id":"1","title":"Edited"}
}

// The purge endpoint on Echo v5: Any matches every method, PURGE
// included; the endpoint answers the wrong ones 405 itself.
func ExamplePurgeHandler() {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"articles": {}}})
	if err != nil {
		panic(err)
	}
	defer rc.Close()

	e := echo.New()
	e.GET("/articles/:id", func(c *echo.Context) error {
		return c.String(http.StatusOK, "article "+c.Param("id"))
	}, echo5adapter.Cache(rc, "articles", core.Tags("article:{id}")))
	purge, err := echo5adapter.PurgeHandler(rc, core.PurgeConfig{Token: "s3cret"})
	if err != nil {
		panic(err)
	}
	e.Any("/_cache/purge", purge)

	do := func(method, path string, header ...string) {
		req := httptest.NewRequest(method, path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		fmt.Println(strings.TrimSpace(fmt.Sprintln(method, path, w.Code, w.Header().Get("X-Cache"))))
	}
	do("GET", "/articles/1")
	do("GET", "/articles/1")
	do("PURGE", "/_cache/purge", "Authorization", "Bearer s3cret", "Surrogate-Key", "article:1")
	do("GET", "/articles/1")
	// Output:
	// GET /articles/1 200 MISS
	// GET /articles/1 200 HIT
	// PURGE /_cache/purge 200
	// GET /articles/1 200 MISS
}
