package core

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/routecache/routecache/core/backend"
)

// Content codings: how the cache keeps responses that vary on
// Accept-Encoding to one entry per coding, and how a region that sets
// Compress stores one gzip copy for every client.
//
// Accept-Encoding is never keyed as sent: a key holds the request's
// normalised coding, the first of gzip, br and zstd the client accepts
// (q=0 refuses one; "*" accepts what is not named), or "" for identity.
// A route keys on it once one of its responses names Accept-Encoding in
// its Vary (a gzip middleware inside the cache), or always when the
// region lists Accept-Encoding in VaryHeaders. Such a response is stored
// under the key of the request's coding only when its Content-Encoding is
// that coding or identity, so an entry only ever goes to clients that
// accept it.

const (
	headerAE = "Accept-Encoding"
	// compressMin is the smallest body a compressing region gzips: below
	// it the gzip framing eats most of the gain.
	compressMin = 256
	// gzipETagSuffix tells a stored gzip copy's strong ETag from the
	// handler's (the identity representation's).
	gzipETagSuffix = "-gzip"
)

// codings the key normalises to, in order of preference: gzip first, the
// coding every usual Go middleware produces.
var keyCodings = [...]string{"gzip", "br", "zstd"}

// nextCoding returns the first element of an Accept-Encoding line: its
// coding, whether its q is zero, and what follows it.
func nextCoding(s string) (coding string, zero bool, rest string, ok bool) {
	for len(s) > 0 && (s[0] == ',' || s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	if s == "" {
		return "", false, "", false
	}
	end := strings.IndexByte(s, ',')
	if end < 0 {
		end = len(s)
	}
	elem, rest := s[:end], s[end:]
	params := ""
	if i := strings.IndexByte(elem, ';'); i >= 0 {
		elem, params = elem[:i], elem[i+1:]
	}
	return strings.TrimSpace(elem), qZero(params), rest, true
}

// qZero reports whether an element's parameters hold q=0 (0, 0., 0.000).
func qZero(params string) bool {
	for params != "" {
		p := params
		if i := strings.IndexByte(p, ';'); i >= 0 {
			p, params = p[:i], p[i+1:]
		} else {
			params = ""
		}
		p = strings.TrimSpace(p)
		if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
			continue
		}
		v := strings.TrimSpace(p[2:])
		if v == "" || v[0] != '0' || len(v) > 5 || len(v) > 1 && v[1] != '.' {
			return false
		}
		for i := 2; i < len(v); i++ {
			if v[i] != '0' {
				return false
			}
		}
		return true
	}
	return false
}

// sameCoding compares a coding token with one of keyCodings (x-gzip is gzip).
func sameCoding(tok, coding string) bool {
	return strings.EqualFold(tok, coding) || coding == "gzip" && strings.EqualFold(tok, "x-gzip")
}

// acceptedCodings reads a request's Accept-Encoding lines: bit i is set
// when keyCodings[i] is acceptable. A coding named with q>0 is; one
// named with q=0 is not; one not named is when "*" is, with q>0.
func acceptedCodings(h http.Header) (mask uint8) {
	lines := h[headerAE]
	if len(lines) == 0 {
		return 0
	}
	var named, refused uint8
	star := 0 // 0 absent, 1 accepted, 2 refused
	for _, l := range lines {
		for rest := l; ; {
			tok, zero, r, ok := nextCoding(rest)
			if !ok {
				break
			}
			rest = r
			if tok == "*" {
				star = 1
				if zero {
					star = 2
				}
				continue
			}
			for i, c := range keyCodings {
				if sameCoding(tok, c) {
					named |= 1 << i
					if zero {
						refused |= 1 << i
					} else {
						refused &^= 1 << i
					}
				}
			}
		}
	}
	mask = named &^ refused
	if star == 1 {
		mask |= ^named & (1<<len(keyCodings) - 1)
	}
	return mask
}

// normalizedCoding is the coding a request is keyed on: the first of
// keyCodings it accepts, or "" (identity).
func normalizedCoding(h http.Header) string {
	m := acceptedCodings(h)
	for i, c := range keyCodings {
		if m&(1<<i) != 0 {
			return c
		}
	}
	return ""
}

// acceptsCoding reports whether a request accepts a response in coding
// (a Content-Encoding value; "" and identity always).
func acceptsCoding(h http.Header, coding string) bool {
	if coding == "" || strings.EqualFold(coding, "identity") {
		return true
	}
	m := acceptedCodings(h)
	for i, c := range keyCodings {
		if sameCoding(coding, c) {
			return m&(1<<i) != 0
		}
	}
	return false
}

// varies reports whether Vary values name the header name.
func varies(vals []string, name string) bool {
	for _, v := range vals {
		for v != "" {
			tok := v
			if i := strings.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				v = ""
			}
			if strings.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}

// responseCoding is a response's Content-Encoding, lower case, "" for
// none or identity, gzip for x-gzip.
func responseCoding(h http.Header) string {
	v := strings.ToLower(strings.TrimSpace(strings.Join(h["Content-Encoding"], ",")))
	switch v {
	case "identity":
		return ""
	case "x-gzip":
		return "gzip"
	}
	return v
}

// encodingReason judges a response's Vary on Accept-Encoding: one an
// outer middleware set before the cache ran is that middleware's (it
// encodes every response, hits included); one the handler side added
// makes the entry keyed on the request's coding (keyed), and it is not
// stored when its coding is neither that one nor identity. A region that
// compresses serves any identity or gzip entry to every client, so those
// need no key of their own.
func (r *Region) encodingReason(req *http.Request, before, sent http.Header) (reason NotStoredReason, keyed bool) {
	if !varies(sent["Vary"], headerAE) || varies(before["Vary"], headerAE) {
		return "", false
	}
	ce := responseCoding(sent)
	if r.cfg.Compress && (ce == "" || ce == "gzip") {
		return "", false
	}
	if ce != "" && ce != normalizedCoding(req.Header) {
		return NotStoredVary, false
	}
	return "", true
}

// codedKey is canonical with its coding field (the key's last, "" until
// the route keys on codings) set to coding.
func codedKey(canonical, coding string) string {
	if coding == "" || canonical == "" || canonical[len(canonical)-1] != 0 {
		return canonical // identity, or already keyed on the request's coding
	}
	b := make([]byte, 0, len(canonical)+1+len(coding))
	b = append(b, canonical[:len(canonical)-1]...)
	b = binary.AppendUvarint(b, uint64(len(coding)))
	return string(append(b, coding...))
}

// encodeEntry applies the region's compression to a new entry and, for a
// response keyed on its coding, moves it under the key of the request's
// coding (the route keys on codings from then on). It returns the storage
// key when that differs from the call's.
func (c *call) encodeEntry(e *backend.Entry, req *http.Request, keyed bool) string {
	r := c.r
	if r.cfg.Compress {
		r.compressEntry(e)
	}
	if !keyed {
		return ""
	}
	if c.rt != nil {
		c.rt.codingKeyed.Store(true)
	}
	k := codedKey(e.Key, normalizedCoding(req.Header))
	if k == e.Key {
		return ""
	}
	e.Key = k
	return r.storageKey(k)
}

// compressible reports whether a Content-Type is worth gzipping: text,
// JSON, XML, JavaScript, SVG and the like (not images, archives, video).
func compressible(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	switch {
	case strings.HasPrefix(ct, "text/"),
		strings.HasSuffix(ct, "+json"), strings.HasSuffix(ct, "+xml"),
		strings.HasSuffix(ct, "/json"), strings.HasSuffix(ct, "/xml"),
		strings.HasSuffix(ct, "/javascript"), strings.HasSuffix(ct, "/ecmascript"),
		ct == "application/x-ndjson", ct == "application/graphql-response+json",
		ct == "application/wasm", ct == "image/x-icon", ct == "application/x-www-form-urlencoded":
		return true
	}
	return false
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}

// gzipBytes compresses b in one gzip member.
func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(b) // a bytes.Buffer does not fail
	_ = zw.Close()
	zw.Reset(io.Discard)
	gzipWriters.Put(zw)
	out := make([]byte, buf.Len()) // exact: the memory budget charges cap
	copy(out, buf.Bytes())
	return out
}

// compressEntry is Compress applied to a new entry: every entry of the
// region says Vary: Accept-Encoding, and an identity body with a
// compressible Content-Type of at least compressMin bytes is stored
// gzipped (when that is smaller), its strong ETag suffixed so the two
// representations never share one.
func (r *Region) compressEntry(e *backend.Entry) {
	if !varies(e.Header["Vary"], headerAE) {
		vs := e.Header["Vary"]
		e.Header["Vary"] = append(vs[:len(vs):len(vs)], headerAE)
	}
	if len(e.Body) < compressMin || len(e.Header["Content-Encoding"]) > 0 ||
		len(e.Header["Content-Range"]) > 0 || !compressible(strings.Join(e.Header["Content-Type"], ",")) {
		return
	}
	gz := gzipBytes(e.Body)
	if len(gz) >= len(e.Body) {
		return
	}
	e.Body = gz
	e.Header["Content-Encoding"] = []string{"gzip"}
	if t := e.ETag; len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		e.ETag = t[:len(t)-1] + gzipETagSuffix + `"`
		e.Header["Etag"] = []string{e.ETag}
	}
}

// identityETag is the identity representation's ETag of a gzip entry's:
// the handler's, for a copy Compress made; for a body that was gzipped
// before the cache saw it, a strong ETag suffixed "-identity", so the two
// representations never share a strong validator. Weak ones are kept.
func identityETag(etag string) string {
	if len(etag) < 2 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		return etag
	}
	if strings.HasSuffix(etag, gzipETagSuffix+`"`) && len(etag) > len(gzipETagSuffix)+2 {
		return etag[:len(etag)-len(gzipETagSuffix)-1] + `"`
	}
	return etag[:len(etag)-1] + `-identity"`
}

// identityView is how a gzip entry is replayed decoded: its headers
// without Content-Encoding, with the identity length and ETag. It is
// derived once per entry (backend.Entry.Derived).
type identityView struct {
	replayed []backend.HeaderValues
	etag     string
	size     int
	ok       bool // the body is one gzip member whose size is known
}

func identityOf(e *backend.Entry) *identityView {
	if v, ok := e.Derived.Load().(*identityView); ok {
		return v
	}
	v := &identityView{etag: identityETag(e.ETag)}
	b := e.Body
	if len(b) >= 18 && b[0] == 0x1f && b[1] == 0x8b {
		// ISIZE, the member's uncompressed length mod 2^32; checked
		// against what decodes.
		v.size, v.ok = int(binary.LittleEndian.Uint32(b[len(b)-4:])), true
	}
	cl := []string{strconv.Itoa(v.size)}
	v.replayed = make([]backend.HeaderValues, 0, len(e.Replayed))
	for _, hv := range e.Replayed {
		switch hv.Name {
		case "Content-Encoding":
			continue
		case "Content-Length":
			hv.Values = cl
		case "Etag":
			hv.Values = []string{v.etag}
		}
		v.replayed = append(v.replayed, hv)
	}
	e.Derived.Store(v)
	return v
}

// gunzipper decodes stored gzip bodies; pooled with its buffer.
type gunzipper struct {
	zr  gzip.Reader
	src bytes.Reader
	buf []byte
}

var gunzippers sync.Pool

var errBadGzip = errors.New("routecache: stored gzip body does not decode to its recorded length")

// gunzip decodes src, which must decode to exactly size bytes. The
// result views g's buffer: put g back once it was written.
func gunzip(src []byte, size int) (g *gunzipper, out []byte, err error) {
	g, _ = gunzippers.Get().(*gunzipper)
	if g == nil {
		g = &gunzipper{}
	}
	g.src.Reset(src)
	if err := g.zr.Reset(&g.src); err != nil {
		putGunzipper(g)
		return nil, nil, err
	}
	if cap(g.buf) < size+1 {
		g.buf = make([]byte, size+1)
	}
	buf := g.buf[:size+1]
	n, err := io.ReadFull(&g.zr, buf) // one byte more than size: must stop short
	if n != size || err != io.ErrUnexpectedEOF && (err != io.EOF || size != 0) {
		putGunzipper(g)
		return nil, nil, errBadGzip
	}
	return g, buf[:size], nil
}

func putGunzipper(g *gunzipper) {
	if cap(g.buf) > 4<<20 {
		g.buf = nil // do not pool huge buffers
	}
	gunzippers.Put(g)
}

// outerEncodes reports whether a middleware before the cache encodes the
// response itself (it set Content-Encoding, or Vary: Accept-Encoding):
// it must get the identity body, or it would compress a gzip body again.
func outerEncodes(h http.Header) bool {
	return len(h["Content-Encoding"]) > 0 || varies(h["Vary"], headerAE)
}

// replayCoded answers a hit whose entry is encoded (Content-Encoding) for
// a client that does not accept that coding, or behind a middleware that
// encodes: a gzip entry is decoded (the hit costs a gunzip), any other
// coding cannot be, so the call answers ok=false (a miss). done is false
// when the entry is replayed as stored.
func (rf *routeFront) replayCoded(c *call, e *backend.Entry, now int64, ev event) (done, ok bool) {
	ces := e.Header["Content-Encoding"]
	if len(ces) == 0 {
		return false, false
	}
	ce := ces[0]
	if !outerEncodes(rf.w.Header()) && acceptsCoding(rf.req.Header, ce) {
		return false, false
	}
	if !sameCoding(ce, "gzip") {
		return true, false
	}
	v := identityOf(e)
	if !v.ok || int64(v.size) > max(c.r.cfg.MaxEntryBytes, int64(len(e.Body))) {
		return true, false
	}
	req := rf.req
	var body []byte
	if req.Method != http.MethodHead && !(e.Status == http.StatusOK && len(req.Header) > 0 && notModified(req, v.etag, e.LastModified)) {
		g, out, err := gunzip(e.Body, v.size)
		if err != nil {
			c.r.c.log.Warn("routecache: stored gzip body does not decode", "region", c.r.name, "err", err)
			return true, false
		}
		defer putGunzipper(g)
		body = out
	}
	c.r.record(ev)
	c.traceReplay(e, now, ev)
	c.r.replayAs(rf.w, req, e, now, isStale(ev), &representation{v.replayed, v.etag, body})
	return true, true
}

// setMissVary is setMiss for a compressing region: its hits vary on
// Accept-Encoding, so its misses say so too.
func setMissVary(rw *recorder) {
	setMiss(rw)
	h := rw.Header()
	if !varies(h["Vary"], headerAE) {
		vs := h["Vary"]
		h["Vary"] = append(vs[:len(vs):len(vs)], headerAE)
	}
}
