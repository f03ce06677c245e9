package core

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// keyFormat is written at the start of every canonical key. Bump it when the
// layout of canonical keys changes so old entries can never match new keys.
// rk4: the default key holds the path decoded (URL.Path), not escaped.
const keyFormat = "rk4"

// keyBuilder appends fields prefixed by their length (a uvarint), so
// that no two different field sequences produce the same bytes: a field
// boundary can never be forged by what a value holds.
type keyBuilder struct{ b []byte }

func (k *keyBuilder) field(s string) { k.b = appendField(k.b, s) }

// appendField is keyBuilder.field on a slice: b leaks only to the result,
// so that a key built in a buffer on the stack stays there (a method's
// k.b = append(k.b, ...) through the pointer moves it to the heap).
func appendField(b []byte, s string) []byte {
	if s == "" {
		return append(b, 0) // (no copy of nothing: RawPath, often Host)
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// values appends a list of values: its count, then each value as a field.
func (k *keyBuilder) values(vs []string) {
	k.b = binary.AppendUvarint(k.b, uint64(len(vs)))
	for _, v := range vs {
		k.field(v)
	}
}

// mac appends the count of vs, then (when there are any) an HMAC-SHA-256
// of them all under the Cache's secret: a credential's stand-in.
func (k *keyBuilder) mac(c *Cache, vs []string) {
	k.b = binary.AppendUvarint(k.b, uint64(len(vs)))
	if len(vs) == 0 {
		return
	}
	h := c.macs.Get().(hash.Hash)
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	for _, v := range vs {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
		io.WriteString(h, v)
	}
	k.b = h.Sum(k.b)
	c.macs.Put(h)
}

// macOne appends a marked field holding the HMAC of one value (KeyFunc's
// part): the mark keeps a key with it apart from one without.
func (k *keyBuilder) macOne(c *Cache, v string) {
	k.field("f")
	h := c.macs.Get().(hash.Hash)
	h.Reset()
	io.WriteString(h, v)
	k.b = h.Sum(k.b)
	c.macs.Put(h)
}

// cookieValues returns the values of every cookie named name, in order
// (a request may repeat one; frameworks read the first, handlers may not).
func cookieValues(req *http.Request, name string) []string {
	if _, ok := req.Header["Cookie"]; !ok {
		return nil
	}
	var out []string
	for _, ck := range req.CookiesNamed(name) {
		out = append(out, ck.Value)
	}
	return out
}

// template is a compiled key or tag template such as "article:{id}".
type template struct {
	raw string
	// text is the expansion of a static template (braces unescaped).
	text  string
	parts []tplPart
	// static is set when the template has no placeholders.
	static bool
	// printable is set when every expansion is visible ASCII without
	// spaces: literal parts are, and no {method} placeholder (substituted
	// values are query-escaped, paths escaped, so those always are).
	printable bool
	// exact is set when the expansion may fold requests a handler can
	// tell apart ({query:x} expands to x's first value, {path} to the
	// escaped path): a key template then also keys on what it folds.
	exact bool
}

type tplKind uint8

const (
	tplLiteral tplKind = iota
	tplParam
	tplQuery
	tplHeader
	tplMethod
	tplPath
	tplHost // {header:Host}: Request.Host, where Go's server moves the header
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
	t.printable = true
	for _, p := range t.parts {
		switch p.kind {
		case tplQuery, tplHeader, tplPath, tplHost:
			t.exact = true
		}
		if p.kind == tplMethod || p.kind == tplLiteral && !allOf(p.text, classPrintable) {
			t.printable = false
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
		n = http.CanonicalHeaderKey(n)
		if n == "Host" {
			return tplPart{kind: tplHost}, nil // not in Request.Header
		}
		if credentialHeaders[n] {
			return tplPart{}, fmt.Errorf("{%s} reads credentials, which never enter a key or tag in clear (use VaryAuthorization or VaryCookies)", name)
		}
		return tplPart{kind: tplHeader, text: n}, nil
	case strings.Contains(name, ":"):
		return tplPart{}, fmt.Errorf("unknown placeholder kind {%s}", name)
	}
	return tplPart{kind: tplParam, text: name}, nil
}

// expand renders the template for a request. Substituted values are
// query-escaped, so a value can never forge the template's own delimiters:
// with "a:{x}:{y}", x="1:2",y="3" and x="1",y="2:3" give different text.
// ok is false when a route parameter the template names is missing.
func (t *template) expand(r *http.Request, p params) (string, bool) {
	if t.static {
		return t.text, true
	}
	b, ok := t.appendTo(nil, r, p)
	return string(b), ok
}

// appendTo is expand appending to dst, without allocating when no value
// needs escaping.
func (t *template) appendTo(dst []byte, r *http.Request, p params) ([]byte, bool) {
	if t.static {
		return append(dst, t.text...), true
	}
	return t.appendFrom(dst, r, p, 0)
}

// appendFrom is appendTo of a template's parts from the from'th on.
func (t *template) appendFrom(dst []byte, r *http.Request, p params, from int) ([]byte, bool) {
	for i := from; i < len(t.parts); i++ {
		part := &t.parts[i] // not copied
		switch part.kind {
		case tplLiteral:
			dst = append(dst, part.text...)
		case tplParam:
			var v string
			var ok bool
			if cp, isCtx := p.(*ctxParams); isCtx {
				v, ok = cp.Get(part.text) // an adapter's: the call devirtualised
			} else {
				v, ok = p.Get(part.text)
			}
			if !ok {
				return dst, false
			}
			dst = appendQueryEscaped(dst, v)
		case tplQuery:
			dst = appendQueryEscaped(dst, r.URL.Query().Get(part.text))
		case tplHeader:
			// Each line escaped, so a ',' inside a value (escaped) never
			// reads as the one between lines.
			for i, v := range r.Header[part.text] {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendQueryEscaped(dst, v)
			}
		case tplHost:
			dst = appendQueryEscaped(dst, r.Host)
		case tplMethod:
			dst = append(dst, cacheMethod(r.Method)...)
		case tplPath:
			dst = append(dst, canonicalPath(r.URL)...)
		}
	}
	return dst, true
}

// appendExact adds to a key what the template's text folds: every value
// of each {query:x} and {header:X} (with their count, so an absent header
// and an empty one differ) and the raw path behind {path}.
func (t *template) appendExact(kb *keyBuilder, r *http.Request) {
	var q url.Values
	for _, part := range t.parts {
		switch part.kind {
		case tplQuery:
			if q == nil {
				q = r.URL.Query()
			}
			kb.values(q[part.text])
		case tplHeader:
			kb.values(r.Header[part.text])
		case tplPath:
			kb.field(r.URL.RawPath)
		case tplHost:
			kb.field(r.Host)
		}
	}
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
	prev := ""
	for len(raw) > 0 {
		i := 0 // the name, up to its '='
		for i < len(raw) && charClass[raw[i]]&classQuery != 0 {
			i++
		}
		if i == 0 || i == len(raw) || raw[i] != '=' || raw[:i] < prev {
			return false
		}
		prev, raw = raw[:i], raw[i+1:]
		j := 0 // the value, up to the '&' or the end
		for j < len(raw) && charClass[raw[j]]&classQuery != 0 {
			j++
		}
		switch {
		case j == len(raw):
			return true
		case raw[j] != '&' || j == len(raw)-1: // another '=', a bad byte, a trailing '&'
			return false
		}
		raw = raw[j+1:]
	}
	return true
}

// Character classes of key text, looked up in one table.
const (
	classUnreserved = 1 << iota // A-Z a-z 0-9 - _ . ~ : never escaped
	classQuery                  // unreserved and '+': kept as is in a canonical query
	classPath                   // what URL.EscapedPath leaves alone in a path
	classPrintable              // visible ASCII, no space: a storage key as it is
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.' || b == '~' {
			t[c] |= classUnreserved | classQuery | classPath
		}
		if b == '+' {
			t[c] |= classQuery
		}
		if strings.IndexByte("/$&+,:;=@", b) >= 0 {
			t[c] |= classPath
		}
		if ' ' < b && b < 0x7f {
			t[c] |= classPrintable
		}
	}
	return t
}()

// allOf reports whether every byte of s is in the character class.
func allOf(s string, class uint8) bool {
	// Eight bytes a step, then four: one test of their classes'
	// intersection (t, of a constant length, is indexed unchecked).
	for len(s) >= 8 {
		t := s[:8]
		if charClass[t[0]]&charClass[t[1]]&charClass[t[2]]&charClass[t[3]]&
			charClass[t[4]]&charClass[t[5]]&charClass[t[6]]&charClass[t[7]]&class == 0 {
			return false
		}
		s = s[8:]
	}
	if len(s) >= 4 {
		if charClass[s[0]]&charClass[s[1]]&charClass[s[2]]&charClass[s[3]]&class == 0 {
			return false
		}
		s = s[4:]
	}
	for i := 0; i < len(s); i++ {
		if charClass[s[i]]&class == 0 {
			return false
		}
	}
	return true
}

// appendQueryEscaped appends url.QueryEscape(v), without its allocation
// when v needs no escaping.
func appendQueryEscaped(dst []byte, v string) []byte {
	if allOf(v, classUnreserved) {
		return append(dst, v...)
	}
	return append(dst, url.QueryEscape(v)...)
}

// canonicalPath is the request's path in its one escaped form, whatever
// spelling the request used: URL.Path (decoded) escaped as net/url escapes
// a path of its own (uppercase hex, no RawPath), so "/a/%34%32",
// "/a/4%32" and "/a/42" all give "/a/42". Key counters are named by it,
// so that InvalidateKey reaches every spelling; the canonical key also
// holds RawPath, which tells the spellings apart.
func canonicalPath(u *url.URL) string {
	if u.Path != "" && allOf(u.Path, classPath) {
		return u.Path
	}
	return (&url.URL{Path: u.Path}).EscapedPath()
}

// hashKey is the lookup key used where a key leaves the process (Redis,
// Memcached): SHA-256 hex, 64 bytes, no spaces or control bytes.
func hashKey(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:])
}
