package difftest

import (
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
)

// ---- Echo v5 ----

// buildEcho5 is the application on Echo v5. Its handlers read what v5's
// own helpers show: c.Param (the raw segment), c.QueryParams, c.Scheme
// (the X-Forwarded-Proto family and X-Url-Scheme from a loopback or
// private peer, as the test clients are), c.RealIP with the documented
// X-Forwarded-For extractor, and X-Real-Ip through v5's
// ExtractIPFromRealIPHeader.
func buildEcho5(tb testing.TB, rc *core.Cache, unsafe bool) http.Handler {
	e := echo.New()
	e.Logger = slog.New(slog.DiscardHandler)
	e.IPExtractor = echo.ExtractIPFromXFFHeader()
	realIPHeader := echo.ExtractIPFromRealIPHeader()
	route := func(path, region string, h echo.HandlerFunc, inner []echo.MiddlewareFunc, opts ...core.RouteOption) {
		var mws []echo.MiddlewareFunc
		if rc != nil {
			m, err := echo5adapter.NewCache(rc, region, opts...)
			if err != nil {
				tb.Fatalf("routecache: echo5 route %s: %v", path, err)
			}
			mws = append(mws, m)
		}
		mws = append(mws, inner...)
		e.Match([]string{http.MethodGet, http.MethodHead}, path, h, mws...)
	}
	route("/p/:id", regionMain, func(c *echo.Context) error {
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
		b.add("real-ip", realIPHeader(c.Request()))
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
	route("/raw/*", regionMain, func(c *echo.Context) error {
		var b reply
		b.add("rest", c.Param("*"))
		b.urlForms(c.Request())
		return c.String(http.StatusOK, b.String())
	}, nil)
	// keyAuth is Echo v5's middleware.KeyAuth with its default lookup
	// ("header:Authorization", scheme "Bearer") and a validator accepting
	// any key, written out as on the v4 front. Its extractor is
	// bearerTokens: every Authorization line, not only the first.
	keyAuth := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			keys := bearerTokens(c.Request())
			if len(keys) == 0 {
				return echo.NewHTTPError(http.StatusUnauthorized, "missing key")
			}
			c.Set("keys", keys[:1]) // the first key the validator accepts
			return next(c)
		}
	}
	route("/auth/:id", regionMain, func(c *echo.Context) error {
		return c.String(http.StatusOK, authReply(c.Param("id"), c.Get("keys").([]string)))
	}, []echo.MiddlewareFunc{keyAuth})
	route("/lang/:id", regionLang, func(c *echo.Context) error {
		return c.String(http.StatusOK, langReply(c.Param("id"), c.Request()))
	}, nil, core.Key(langKey))
	route("/vary/:id", regionVary, func(c *echo.Context) error {
		c.Response().Header().Set("Vary", "X-Variant")
		return c.String(http.StatusOK, varyReply(c.Param("id"), c.Request()))
	}, nil)
	route("/setcookie/:id", regionMain, func(c *echo.Context) error {
		c.Response().Header()["set-cookie"] = []string{"seen=" + c.Request().Header.Get("X-Request-Id")}
		return c.String(http.StatusOK, "id="+c.Param("id")+"\n")
	}, nil)
	route("/setcookie-ok/:id", regionMain, func(c *echo.Context) error {
		c.Response().Header()["Set-Cookie"] = []string{"seen=" + c.Request().Header.Get("X-Request-Id")}
		return c.String(http.StatusOK, "id="+c.Param("id")+"\n")
	}, nil)
	route("/private/:id", regionMain, func(c *echo.Context) error {
		c.Response().Header()["cache-control"] = []string{"private"}
		return c.String(http.StatusOK, personal(c.Request()))
	}, nil)
	route("/private-ok/:id", regionMain, func(c *echo.Context) error {
		c.Response().Header().Set("Cache-Control", "private")
		return c.String(http.StatusOK, personal(c.Request()))
	}, nil)
	if unsafe {
		route("/unsafe/:id", regionMain, func(c *echo.Context) error {
			return c.String(http.StatusOK, unsafeReply(c.Param("id"), c.Request()))
		}, nil)
	}
	return e
}
