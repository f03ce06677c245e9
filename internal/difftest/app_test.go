package difftest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/labstack/echo/v4"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echoadapter"
	"github.com/routecache/routecache/ginadapter"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// The application under test. Every handler is deterministic: its answer
// is a function of the request as the framework's helpers show it, so the
// uncached app is the oracle for the cached one. Routes (Gin syntax):
//
//	/p/:id           region main, default key: echoes the param, the path
//	                 forms, every query value, host, scheme, client IP, the
//	                 keyed forwarding headers, bearer tokens, the theme cookie
//	/raw/*rest       region main: the catch-all param and the path forms
//	/auth/:id        region main: an API-key route (Echo's KeyAuth lookup on
//	                 Echo, a bearer reader on Gin and net/http); 401 without a key
//	/lang/:id        region lang, Key("lang:{id}:{header:Accept-Language}"):
//	                 echoes every Accept-Language line
//	/vary/:id        region vary (VaryHeaders X-Variant), answers Vary: X-Variant
//	/setcookie/:id   region main: a Set-Cookie under a non-canonical map key
//	/setcookie-ok/:id   the same with the canonical key (control)
//	/private/:id     region main: Cache-Control: private under a
//	                 non-canonical key, body personalised by X-Request-Id
//	/private-ok/:id  the same with the canonical key (control)
//	/unsafe/:id      region main: echoes X-Custom, which nothing keys on.
//	                 Deliberately wrong; only the self-check requests it.
const (
	regionMain = "main"
	regionLang = "lang"
	regionVary = "vary"
)

var regionNames = []string{regionMain, regionLang, regionVary}

// langKey is the lang route's key template.
const langKey = "lang:{id}:{header:Accept-Language}"

// regions returns the application's regions on the backend URL, every key
// under prefix. Lifetimes are generous so that nothing expires or times
// out during a run, however loaded the machine.
func regions(backend, prefix string) map[string]core.RegionConfig {
	base := core.RegionConfig{
		Backend:     backend,
		Prefix:      prefix,
		TTL:         10 * time.Minute,
		FillTimeout: 30 * time.Second,
		LeaseTTL:    30 * time.Second,
		LeaseWait:   30 * time.Second,
	}
	mainR := base
	mainR.VaryCookies = []string{"theme"}
	mainR.IgnoreCookies = []string{"_ga"}
	varyR := base
	varyR.VaryHeaders = []string{"X-Variant"}
	return map[string]core.RegionConfig{regionMain: mainR, regionLang: base, regionVary: varyR}
}

// reply accumulates a handler's answer: one "name=%q" line per observed
// value, so that any difference in what a handler saw shows in the body.
type reply struct{ b strings.Builder }

func (r *reply) add(name string, v any) { fmt.Fprintf(&r.b, "%s=%q\n", name, v) }
func (r *reply) String() string         { return r.b.String() }

// urlForms records the path as every net/http accessor shows it.
func (r *reply) urlForms(req *http.Request) {
	r.add("path", req.URL.Path)
	r.add("rawpath", req.URL.RawPath)
	r.add("escaped", req.URL.EscapedPath())
}

// query records every value of every query parameter, names sorted,
// through get (the framework's helper for one name).
func (r *reply) query(names []string, get func(string) []string) {
	sort.Strings(names)
	for _, n := range names {
		r.add("q["+n+"]", get(n))
	}
}

// forwarding headers a handler commonly builds absolute URLs from; the
// cache keys on all of them by default.
var forwarding = []string{"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Scheme", "Forwarded"}

func (r *reply) forwarded(req *http.Request) {
	for _, h := range forwarding {
		r.add(h, req.Header.Values(h))
	}
}

// bearerTokens returns the tokens of every "Bearer" Authorization line, as
// Echo's KeyAuth extractor and typical bearer readers find them: any line,
// not only the first.
func bearerTokens(req *http.Request) []string {
	var out []string
	for _, v := range req.Header.Values("Authorization") {
		if len(v) > len("Bearer ") && strings.EqualFold(v[:len("Bearer ")], "Bearer ") {
			out = append(out, v[len("Bearer "):])
		}
	}
	return out
}

// proxyScheme is the scheme as a proxy-aware net/http or Gin app reads it
// (the gorilla/handlers ProxyHeaders way).
func proxyScheme(req *http.Request) string {
	if req.TLS != nil {
		return "https"
	}
	if v := req.Header.Get("X-Forwarded-Proto"); v != "" {
		return strings.ToLower(v)
	}
	if v := req.Header.Get("X-Forwarded-Scheme"); v != "" {
		return strings.ToLower(v)
	}
	for _, f := range strings.Split(req.Header.Get("Forwarded"), ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(f), "="); ok && strings.EqualFold(k, "proto") {
			return strings.ToLower(strings.Trim(v, `"`))
		}
	}
	return "http"
}

// clientIPHeaders are read, in order, by realIP: the platform headers of
// CDNs and hosts, then the generic ones.
var clientIPHeaders = []string{
	"Cf-Connecting-Ip", "True-Client-Ip", "Fly-Client-Ip", "X-Appengine-Remote-Addr",
	"X-Forwarded-For", "X-Real-Ip",
}

// realIP is a net/http app's client IP helper.
func realIP(req *http.Request) string {
	for _, h := range clientIPHeaders {
		if v := req.Header.Get(h); v != "" {
			first, _, _ := strings.Cut(v, ",")
			return strings.TrimSpace(first)
		}
	}
	host, _, _ := net.SplitHostPort(req.RemoteAddr)
	return host
}

// common writes what every front's handlers share beyond the framework's
// own helpers.
func langReply(id string, req *http.Request) string {
	var r reply
	r.add("id", id)
	r.add("accept-language", req.Header.Values("Accept-Language"))
	return r.String()
}

func varyReply(id string, req *http.Request) string {
	var r reply
	r.add("id", id)
	r.add("variant", req.Header.Values("X-Variant"))
	return r.String()
}

func personal(req *http.Request) string { return "for=" + req.Header.Get("X-Request-Id") + "\n" }

func unsafeReply(id string, req *http.Request) string {
	return "id=" + id + "\ncustom=" + req.Header.Get("X-Custom") + "\n"
}

// authReply is the answer of the API-key route, or "" for a 401.
func authReply(id string, keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	var r reply
	r.add("id", id)
	r.add("key", keys)
	return r.String()
}

// frontDef builds one framework's app; rc nil builds it uncached. The
// deliberately unsafe route is registered only when unsafe is set (the
// self-check), so that the fuzzer cannot reach it.
type frontDef struct {
	name  string
	build func(tb testing.TB, rc *core.Cache, unsafe bool) http.Handler
}

var fronts = []frontDef{
	{"gin", buildGin},
	{"echo", buildEcho},
	{"echo5", buildEcho5}, // app_echo5_test.go
	{"nethttp", buildNetHTTP},
}

// ---- Gin ----

func buildGin(tb testing.TB, rc *core.Cache, unsafe bool) http.Handler {
	r := gin.New()
	r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) {
		c.AbortWithStatus(http.StatusInternalServerError)
	}))
	route := func(path, region string, h gin.HandlerFunc, opts ...core.RouteOption) {
		chain := []gin.HandlerFunc{}
		if rc != nil {
			m, err := ginadapter.NewCache(rc, region, opts...)
			if err != nil {
				tb.Fatalf("routecache: gin route %s: %v", path, err)
			}
			chain = append(chain, m)
		}
		chain = append(chain, h)
		r.GET(path, chain...)
		r.HEAD(path, chain...)
	}
	route("/p/:id", regionMain, func(c *gin.Context) {
		var b reply
		b.add("id", c.Param("id"))
		b.urlForms(c.Request)
		var names []string
		for n := range c.Request.URL.Query() {
			names = append(names, n)
		}
		b.query(names, c.QueryArray)
		b.add("host", c.Request.Host)
		b.add("scheme", proxyScheme(c.Request))
		b.add("ip", c.ClientIP())
		b.forwarded(c.Request)
		b.add("bearer", bearerTokens(c.Request))
		theme, err := c.Cookie("theme")
		b.add("theme", fmt.Sprint(theme, err != nil))
		c.String(http.StatusOK, b.String())
	})
	route("/raw/*rest", regionMain, func(c *gin.Context) {
		var b reply
		b.add("rest", c.Param("rest"))
		b.urlForms(c.Request)
		c.String(http.StatusOK, b.String())
	})
	route("/auth/:id", regionMain, func(c *gin.Context) {
		if s := authReply(c.Param("id"), bearerTokens(c.Request)); s != "" {
			c.String(http.StatusOK, s)
			return
		}
		c.String(http.StatusUnauthorized, "missing key\n")
	})
	route("/lang/:id", regionLang, func(c *gin.Context) {
		c.String(http.StatusOK, langReply(c.Param("id"), c.Request))
	}, core.Key(langKey))
	route("/vary/:id", regionVary, func(c *gin.Context) {
		c.Header("Vary", "X-Variant")
		c.String(http.StatusOK, varyReply(c.Param("id"), c.Request))
	})
	route("/setcookie/:id", regionMain, func(c *gin.Context) {
		c.Writer.Header()["set-cookie"] = []string{"seen=" + c.GetHeader("X-Request-Id")}
		c.String(http.StatusOK, "id="+c.Param("id")+"\n")
	})
	route("/setcookie-ok/:id", regionMain, func(c *gin.Context) {
		c.Writer.Header()["Set-Cookie"] = []string{"seen=" + c.GetHeader("X-Request-Id")}
		c.String(http.StatusOK, "id="+c.Param("id")+"\n")
	})
	route("/private/:id", regionMain, func(c *gin.Context) {
		c.Writer.Header()["cache-control"] = []string{"private"}
		c.String(http.StatusOK, personal(c.Request))
	})
	route("/private-ok/:id", regionMain, func(c *gin.Context) {
		c.Header("Cache-Control", "private")
		c.String(http.StatusOK, personal(c.Request))
	})
	if unsafe {
		route("/unsafe/:id", regionMain, func(c *gin.Context) {
			c.String(http.StatusOK, unsafeReply(c.Param("id"), c.Request))
		})
	}
	return r
}

// ---- Echo ----

func buildEcho(tb testing.TB, rc *core.Cache, unsafe bool) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	route := func(path, region string, h echo.HandlerFunc, inner []echo.MiddlewareFunc, opts ...core.RouteOption) {
		var mws []echo.MiddlewareFunc
		if rc != nil {
			m, err := echoadapter.NewCache(rc, region, opts...)
			if err != nil {
				tb.Fatalf("routecache: echo route %s: %v", path, err)
			}
			mws = append(mws, m)
		}
		mws = append(mws, inner...)
		e.Match([]string{http.MethodGet, http.MethodHead}, path, h, mws...)
	}
	route("/p/:id", regionMain, func(c echo.Context) error {
		var b reply
		b.add("id", c.Param("id"))
		b.urlForms(c.Request())
		qp := c.QueryParams()
		var names []string
		for n := range qp {
			names = append(names, n)
		}
		b.query(names, func(n string) []string { return qp[n] })
		b.add("host", c.Request().Host)
		b.add("scheme", c.Scheme())
		b.add("ip", c.RealIP())
		b.forwarded(c.Request())
		b.add("bearer", bearerTokens(c.Request()))
		ck, err := c.Cookie("theme")
		theme := ""
		if err == nil {
			theme = ck.Value
		}
		b.add("theme", fmt.Sprint(theme, err != nil))
		return c.String(http.StatusOK, b.String())
	}, nil)
	route("/raw/*", regionMain, func(c echo.Context) error {
		var b reply
		b.add("rest", c.Param("*"))
		b.urlForms(c.Request())
		return c.String(http.StatusOK, b.String())
	}, nil)
	// keyAuth is Echo's middleware.KeyAuth with its default lookup
	// ("header:Authorization", scheme "Bearer") and a validator accepting
	// any key; written out because importing echo/v4/middleware would add
	// golang.org/x/time to the module. Its extractor is bearerTokens: every
	// Authorization line, not only the first.
	keyAuth := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			keys := bearerTokens(c.Request())
			if len(keys) == 0 {
				return echo.NewHTTPError(http.StatusUnauthorized, "missing key")
			}
			c.Set("keys", keys[:1]) // the first key the validator accepts
			return next(c)
		}
	}
	route("/auth/:id", regionMain, func(c echo.Context) error {
		return c.String(http.StatusOK, authReply(c.Param("id"), c.Get("keys").([]string)))
	}, []echo.MiddlewareFunc{keyAuth})
	route("/lang/:id", regionLang, func(c echo.Context) error {
		return c.String(http.StatusOK, langReply(c.Param("id"), c.Request()))
	}, nil, core.Key(langKey))
	route("/vary/:id", regionVary, func(c echo.Context) error {
		c.Response().Header().Set("Vary", "X-Variant")
		return c.String(http.StatusOK, varyReply(c.Param("id"), c.Request()))
	}, nil)
	route("/setcookie/:id", regionMain, func(c echo.Context) error {
		c.Response().Header()["set-cookie"] = []string{"seen=" + c.Request().Header.Get("X-Request-Id")}
		return c.String(http.StatusOK, "id="+c.Param("id")+"\n")
	}, nil)
	route("/setcookie-ok/:id", regionMain, func(c echo.Context) error {
		c.Response().Header()["Set-Cookie"] = []string{"seen=" + c.Request().Header.Get("X-Request-Id")}
		return c.String(http.StatusOK, "id="+c.Param("id")+"\n")
	}, nil)
	route("/private/:id", regionMain, func(c echo.Context) error {
		c.Response().Header()["cache-control"] = []string{"private"}
		return c.String(http.StatusOK, personal(c.Request()))
	}, nil)
	route("/private-ok/:id", regionMain, func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "private")
		return c.String(http.StatusOK, personal(c.Request()))
	}, nil)
	if unsafe {
		route("/unsafe/:id", regionMain, func(c echo.Context) error {
			return c.String(http.StatusOK, unsafeReply(c.Param("id"), c.Request()))
		}, nil)
	}
	return e
}

// ---- net/http ----

func buildNetHTTP(tb testing.TB, rc *core.Cache, unsafe bool) http.Handler {
	mux := http.NewServeMux()
	route := func(pattern, region string, h http.HandlerFunc, opts ...core.RouteOption) {
		var hh http.Handler = h
		if rc != nil {
			mw, err := rc.Middleware(region, opts...)
			if err != nil {
				tb.Fatalf("routecache: net/http route %s: %v", pattern, err)
			}
			hh = mw(h)
		}
		mux.Handle("GET "+pattern, hh) // GET patterns serve HEAD too
	}
	text := func(w http.ResponseWriter, status int, s string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, s)
	}
	route("/p/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		var b reply
		b.add("id", r.PathValue("id"))
		b.urlForms(r)
		q := r.URL.Query()
		var names []string
		for n := range q {
			names = append(names, n)
		}
		b.query(names, func(n string) []string { return q[n] })
		b.add("host", r.Host)
		b.add("scheme", proxyScheme(r))
		b.add("ip", realIP(r))
		b.forwarded(r)
		b.add("bearer", bearerTokens(r))
		ck, err := r.Cookie("theme")
		theme := ""
		if err == nil {
			theme = ck.Value
		}
		b.add("theme", fmt.Sprint(theme, err != nil))
		text(w, http.StatusOK, b.String())
	})
	route("/raw/{rest...}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		var b reply
		b.add("rest", r.PathValue("rest"))
		b.urlForms(r)
		text(w, http.StatusOK, b.String())
	})
	route("/auth/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		if s := authReply(r.PathValue("id"), bearerTokens(r)); s != "" {
			text(w, http.StatusOK, s)
			return
		}
		text(w, http.StatusUnauthorized, "missing key\n")
	})
	route("/lang/{id}", regionLang, func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, langReply(r.PathValue("id"), r))
	}, core.Key(langKey))
	route("/vary/{id}", regionVary, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "X-Variant")
		text(w, http.StatusOK, varyReply(r.PathValue("id"), r))
	})
	route("/setcookie/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["set-cookie"] = []string{"seen=" + r.Header.Get("X-Request-Id")}
		text(w, http.StatusOK, "id="+r.PathValue("id")+"\n")
	})
	route("/setcookie-ok/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Set-Cookie"] = []string{"seen=" + r.Header.Get("X-Request-Id")}
		text(w, http.StatusOK, "id="+r.PathValue("id")+"\n")
	})
	route("/private/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["cache-control"] = []string{"private"}
		text(w, http.StatusOK, personal(r))
	})
	route("/private-ok/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		text(w, http.StatusOK, personal(r))
	})
	if unsafe {
		route("/unsafe/{id}", regionMain, func(w http.ResponseWriter, r *http.Request) {
			text(w, http.StatusOK, unsafeReply(r.PathValue("id"), r))
		})
	}
	return mux
}
