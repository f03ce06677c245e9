package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/routecache/routecache/core"
)

// article is one record of the demo's in-memory "database".
type article struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Rev   int    `json:"rev"`
}

// numArticles is how many articles the data starts with (ids 1..numArticles).
const numArticles = 100

// app holds the data and the framework-independent handlers. The three
// framework setups in routes.go only translate a route to one of these
// methods, passing the route parameter.
type app struct {
	rc *core.Cache
	// metrics serves GET /metrics (set by newServer).
	metrics http.Handler
	delay   time.Duration

	data articleStore

	// originCalls counts the runs of the cached GET handlers (the
	// "origin"): every request the cache did not answer itself.
	originCalls atomic.Int64
}

func newApp(rc *core.Cache, delay time.Duration, data articleStore) *app {
	return &app{rc: rc, delay: delay, data: data}
}

// origin marks the start of an origin handler: it counts the call and
// waits the simulated latency of a slow database or upstream service.
func (a *app) origin(ctx context.Context) {
	a.originCalls.Add(1)
	if a.delay <= 0 {
		return
	}
	t := time.NewTimer(a.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// getArticle serves GET /articles/:id.
func (a *app) getArticle(w http.ResponseWriter, r *http.Request, rawID string) {
	a.origin(r.Context())
	id, err := strconv.Atoi(rawID)
	art, ok := article{}, false
	if err == nil {
		if art, ok, err = a.data.get(r.Context(), id); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
	}
	if !ok {
		// 404 is not in the region's Statuses, so it is never stored.
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no article " + strconv.Quote(rawID)})
		return
	}
	writeJSON(w, http.StatusOK, art)
}

// listArticles serves GET /articles.
func (a *app) listArticles(w http.ResponseWriter, r *http.Request) {
	a.origin(r.Context())
	list, err := a.data.list(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	tagShown(r, list)
	writeJSON(w, http.StatusOK, list)
}

// tagShown tags the entry being filled with the tag of every article a
// list page shows (core.AddTags): a PUT of one of them invalidates the
// page, a PUT of another leaves it cached.
func tagShown(r *http.Request, shown []article) {
	tags := make([]string, len(shown))
	for i, art := range shown {
		tags[i] = "article:" + strconv.Itoa(art.ID)
	}
	core.AddTags(r.Context(), tags...)
}

// headlinesLifetime is the /headlines route's own lifetime (core.TTL), shorter
// than its region's 5 minutes: a front-page box that may lag a little less.
const headlinesLifetime = 10 * time.Second

// headlines serves GET /headlines: the first three titles, cached for
// headlinesLifetime in the articles region, tagged like the list.
func (a *app) headlines(w http.ResponseWriter, r *http.Request) {
	a.origin(r.Context())
	list, err := a.data.list(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	titles := []string{}
	shown := list[:min(3, len(list))]
	tagShown(r, shown)
	for _, art := range shown {
		titles = append(titles, art.Title)
	}
	writeJSON(w, http.StatusOK, map[string][]string{"headlines": titles})
}

// putArticle serves PUT /articles/:id with a body {"title": "..."}. The
// route's invalidating decorator bumps the tags article:{id} and articles
// when this answers 2xx, before the answer reaches the client.
func (a *app) putArticle(w http.ResponseWriter, r *http.Request, rawID string) {
	var in struct {
		Title *string `json:"title"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad JSON: " + err.Error()})
		return
	}
	if in.Title == nil || strings.TrimSpace(*in.Title) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body needs a non-empty "title"`})
		return
	}
	id, err := strconv.Atoi(rawID)
	art, ok := article{}, false
	if err == nil {
		if art, ok, err = a.data.setTitle(r.Context(), id, *in.Title); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no article " + strconv.Quote(rawID)})
		return
	}
	writeJSON(w, http.StatusOK, art)
}

// me serves GET /me, a personalised route. It sits behind a cache
// decorator on purpose: by default the cache bypasses every request that
// carries an Authorization header (X-Cache: BYPASS, Cache-Status
// detail=authorization), so one user's body is never stored, let alone
// served to another user. (A region with VaryAuthorization: true would
// instead keep one entry per credential.) A request without a token gets
// a 401, and 401 is not a cacheable status by default either.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	a.origin(r.Context())
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing bearer token"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": strings.TrimSpace(token)})
}

// stats serves GET /stats (not cached).
func (a *app) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statsBody{
		OriginCalls: a.originCalls.Load(),
		Regions:     a.rc.Stats(),
	})
}

type statsBody struct {
	OriginCalls int64                 `json:"origin_calls"`
	Regions     map[string]core.Stats `json:"regions"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // an error means the client went away
}
