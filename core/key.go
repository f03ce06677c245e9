package core

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// keyFormat is written at the start of every canonical key. Bump it when the
// layout of canonical keys changes so old entries can never match new keys.
const keyFormat = "rk1"

// Params gives the cache the values of a request's route parameters
// (":id" in Gin and Echo, "{id}" in net/http patterns). Adapters provide it.
type Params interface {
	// Get returns the value of the named parameter and whether it exists.
	Get(name string) (string, bool)
}

// NoParams is the Params of a route without parameters.
var NoParams Params = noParams{}

type noParams struct{}

func (noParams) Get(string) (string, bool) { return "", false }

// PathValues adapts a net/http request (Go 1.22 patterns) to Params.
type PathValues struct{ R *http.Request }

// Get returns r.PathValue(name); a missing or empty value reports false.
func (p PathValues) Get(name string) (string, bool) {
	v := p.R.PathValue(name)
	return v, v != ""
}

// keyBuilder appends fields prefixed by their length (a uvarint), so
// that no two different field sequences produce the same bytes: a field
// boundary can never be forged by what a value holds.
type keyBuilder struct{ b []byte }

func (k *keyBuilder) field(s string) {
	k.b = binary.AppendUvarint(k.b, uint64(len(s)))
	k.b = append(k.b, s...)
}

// values appends a list of values: its count, then each value as a field.
func (k *keyBuilder) values(vs []string) {
	k.b = binary.AppendUvarint(k.b, uint64(len(vs)))
	for _, v := range vs {
		k.field(v)
	}
}

// template is a compiled key or tag template such as "article:{id}".
type template struct {
	raw string
	// text is the expansion of a static template (braces unescaped).
	text  string
	parts []tplPart
	// static is set when the template has no placeholders.
	static bool
}

type tplKind uint8

const (
	tplLiteral tplKind = iota
	tplParam
	tplQuery
	tplHeader
	tplMethod
	tplPath
)

type tplPart struct {
	kind tplKind
	text string // literal text, or the parameter/query/header name
}

// parseTemplate compiles a template. Placeholders: {name} (route parameter),
// {query:name}, {header:Name}, {method}, {path}. "{{" and "}}" are literal braces.
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, fmt.Errorf("routecache: empty template")
	}
	t := &template{raw: s, static: true}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tplPart{kind: tplLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '}':
			return nil, fmt.Errorf("routecache: template %q: unmatched '}' at %d", s, i)
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("routecache: template %q: unclosed '{' at %d", s, i)
			}
			name := s[i+1 : i+end]
			p, err := placeholder(name)
			if err != nil {
				return nil, fmt.Errorf("routecache: template %q: %w", s, err)
			}
			flush()
			t.parts = append(t.parts, p)
			t.static = false
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	if t.static {
		for _, p := range t.parts {
			t.text += p.text
		}
	}
	return t, nil
}

func placeholder(name string) (tplPart, error) {
	if name == "" {
		return tplPart{}, fmt.Errorf("empty placeholder {}")
	}
	if strings.ContainsAny(name, "{ \t") {
		return tplPart{}, fmt.Errorf("bad placeholder {%s}", name)
	}
	switch {
	case name == "method":
		return tplPart{kind: tplMethod}, nil
	case name == "path":
		return tplPart{kind: tplPath}, nil
	case strings.HasPrefix(name, "query:"):
		n := name[len("query:"):]
		if n == "" {
			return tplPart{}, fmt.Errorf("empty query name in {%s}", name)
		}
		return tplPart{kind: tplQuery, text: n}, nil
	case strings.HasPrefix(name, "header:"):
		n := name[len("header:"):]
		if n == "" {
			return tplPart{}, fmt.Errorf("empty header name in {%s}", name)
		}
		return tplPart{kind: tplHeader, text: http.CanonicalHeaderKey(n)}, nil
	case strings.Contains(name, ":"):
		return tplPart{}, fmt.Errorf("unknown placeholder kind {%s}", name)
	}
	return tplPart{kind: tplParam, text: name}, nil
}

// params lists the route parameter names the template needs.
func (t *template) params() []string {
	var out []string
	for _, p := range t.parts {
		if p.kind == tplParam {
			out = append(out, p.text)
		}
	}
	return out
}

// expand renders the template for a request. Substituted values are
// query-escaped, so a value can never forge the template's own delimiters:
// with "a:{x}:{y}", x="1:2",y="3" and x="1",y="2:3" give different text.
// ok is false when a route parameter the template names is missing.
func (t *template) expand(r *http.Request, p Params) (string, bool) {
	if t.static {
		return t.text, true
	}
	b, ok := t.appendTo(nil, r, p)
	return string(b), ok
}

// appendTo is expand appending to dst, without allocating when no value
// needs escaping.
func (t *template) appendTo(dst []byte, r *http.Request, p Params) ([]byte, bool) {
	if t.static {
		return append(dst, t.text...), true
	}
	for _, part := range t.parts {
		switch part.kind {
		case tplLiteral:
			dst = append(dst, part.text...)
		case tplParam:
			v, ok := p.Get(part.text)
			if !ok {
				return dst, false
			}
			dst = append(dst, url.QueryEscape(v)...)
		case tplQuery:
			dst = append(dst, url.QueryEscape(r.URL.Query().Get(part.text))...)
		case tplHeader:
			dst = append(dst, url.QueryEscape(strings.Join(r.Header.Values(part.text), ","))...)
		case tplMethod:
			dst = append(dst, cacheMethod(r.Method)...)
		case tplPath:
			dst = append(dst, r.URL.EscapedPath()...)
		}
	}
	return dst, true
}

// cacheMethod maps HEAD onto GET: both share one entry.
func cacheMethod(m string) string {
	if m == http.MethodHead {
		return http.MethodGet
	}
	return m
}

// canonicalQuery sorts a query string by parameter name (keeping the order
// of repeated values, which handlers can observe) and re-encodes it, so that
// "?b=2&a=1" and "?a=1&b=2" share an entry. A query that does not parse
// cleanly (for example one using ';' as a separator, which Go rejects but
// some proxies accept) is kept verbatim behind a marker, so it can never
// share a key with a query that does parse.
func canonicalQuery(raw string) string {
	if raw == "" || isCanonicalQuery(raw) {
		return raw
	}
	return canonicalQuerySlow(raw)
}

func canonicalQuerySlow(raw string) string {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "!raw:" + raw
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		ek := url.QueryEscape(k)
		for _, v := range vals[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(ek)
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(v))
		}
	}
	return b.String()
}

// isCanonicalQuery reports, without allocating, whether raw is already in
// the form canonicalQuery produces: name=value pairs of unreserved
// characters (and '+'), every pair with one '=', names in sorted order.
func isCanonicalQuery(raw string) bool {
	prevName := ""
	for len(raw) > 0 {
		pair := raw
		if i := strings.IndexByte(raw, '&'); i >= 0 {
			pair, raw = raw[:i], raw[i+1:]
			if raw == "" {
				return false // trailing '&'
			}
		} else {
			raw = ""
		}
		eq := strings.IndexByte(pair, '=')
		if eq <= 0 {
			return false
		}
		name, value := pair[:eq], pair[eq+1:]
		if !unreservedPlus(name) || !unreservedPlus(value) || name < prevName {
			return false
		}
		prevName = name
	}
	return true
}

func unreservedPlus(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '+') {
			return false
		}
	}
	return true
}

// hashKey is the lookup key used where a key leaves the process (Redis,
// Memcached): SHA-256 hex, 64 bytes, no spaces or control bytes.
func hashKey(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:])
}

// hashSecret keys on a secret (an Authorization value) without storing it.
func hashSecret(v string) string {
	sum := sha256.Sum256([]byte("routecache-principal\x00" + v))
	return hex.EncodeToString(sum[:16])
}
