package ginadapter_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
)

// A Gin route cached in the "articles" region, and a PUT route that
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

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/articles/:id",
		ginadapter.Cache(rc, "articles", core.Tags("article:{id}", "articles")),
		func(c *gin.Context) {
			c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "title": titles[c.Param("id")]})
		})
	r.PUT("/articles/:id",
		ginadapter.Invalidate(rc, core.Tags("article:{id}", "articles")),
		func(c *gin.Context) {
			var in struct {
				Title string `json:"title"`
			}
			if err := c.ShouldBindJSON(&in); err != nil {
				c.AbortWithStatus(http.StatusBadRequest) // not 2xx: nothing is invalidated
				return
			}
			titles[c.Param("id")] = in.Title
			c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "title": in.Title})
		})

	do := func(method, path, body string) {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
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
