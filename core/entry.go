package core

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The stored envelope. Layout of version 1 (all integers big-endian or
// unsigned varints, strings and byte slices length-prefixed by a uvarint):
//
//	magic "RCE" | version 1 | status u16 | created i64 | fresh-until i64 |
//	stale-until i64 | fill-nanos i64 | etag str | canonical key str | n-counters uv |
//	{name str, value u64}* | n-headers uv | {name str, n-values uv, {value str}*}* |
//	body bytes | crc32c u32 (of everything before it)
//
// The decoder checks every length against the bytes left and the checksum,
// so a truncated or corrupted value decodes to an error (served as a miss),
// never a panic and never a wrong response.
const (
	entryMagic   = "RCE"
	entryVersion = 1
	// entryFixed is the size of magic, version, status and three timestamps.
	entryFixed = 3 + 1 + 2 + 8*4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt reports an entry that cannot be decoded.
var errCorrupt = errors.New("routecache: corrupt entry")

// counterSnap is the value an invalidation counter had before the handler
// that produced an entry ran.
type counterSnap struct {
	name  string
	value uint64
}

// entry is one cached response. It is immutable once stored: hits share it.
type entry struct {
	status     int
	header     http.Header // replayable headers only
	body       []byte
	created    int64 // unix nanoseconds
	freshUntil int64
	staleUntil int64
	fillNanos  int64 // how long the handler took: XFetch's delta
	etag       string
	key        string // canonical key text, compared on every hit
	counters   []counterSnap

	// derived on creation or decode, never stored
	contentLength []string // the Content-Length header value, shared by hits
	lastModified  time.Time
	// replayed lists the headers a hit writes, Content-Length included,
	// in a slice: iterating a map on every hit costs more than the writes.
	replayed []headerValues
	// hit caches the Age and Cache-Status values of the current second.
	hit atomic.Pointer[hitHeaders]
}

// headerValues is one header of a replayed response. Its values are
// handed out with len == cap, so an Add by later code copies them instead
// of writing into the entry.
type headerValues struct {
	name   string
	values []string
}

// hitHeaders are the per-second header values of an entry's hits.
type hitHeaders struct {
	age, ttl          int64
	ageV, cacheStatus []string
}

// hitHeaders returns the Age and Cache-Status values for a hit age
// seconds after creation with ttl seconds of freshness left, building
// them at most once per second per entry.
func (e *entry) hitHeaders(age, ttl int64) *hitHeaders {
	if h := e.hit.Load(); h != nil && h.age == age && h.ttl == ttl {
		return h
	}
	h := &hitHeaders{
		age: age, ttl: ttl,
		ageV:        []string{strconv.FormatInt(age, 10)},
		cacheStatus: []string{"routecache; hit; ttl=" + strconv.FormatInt(ttl, 10)},
	}
	e.hit.Store(h)
	return h
}

// prepare computes the derived fields used on every hit.
func (e *entry) prepare() {
	e.contentLength = []string{strconv.Itoa(len(e.body))}
	e.replayed = make([]headerValues, 0, len(e.header)+1)
	for _, k := range sortedKeys(e.header) {
		if k == "Content-Length" {
			continue // always the body's own length
		}
		vs := e.header[k]
		e.replayed = append(e.replayed, headerValues{k, vs[:len(vs):len(vs)]})
	}
	e.replayed = append(e.replayed, headerValues{"Content-Length", e.contentLength})
	if lm := e.header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			e.lastModified = t
		}
	}
}

// strongETag derives a strong validator from the body (128 bits of SHA-256).
func strongETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// size is the number of bytes the encoded entry takes; the memory backend
// charges it against the byte budget.
func (e *entry) size() int {
	n := entryFixed + 4
	n += uvlen(len(e.etag)) + len(e.etag)
	n += uvlen(len(e.key)) + len(e.key)
	n += uvlen(len(e.counters))
	for _, c := range e.counters {
		n += uvlen(len(c.name)) + len(c.name) + 8
	}
	n += uvlen(len(e.header))
	for k, vs := range e.header {
		n += uvlen(len(k)) + len(k) + uvlen(len(vs))
		for _, v := range vs {
			n += uvlen(len(v)) + len(v)
		}
	}
	n += uvlen(len(e.body)) + len(e.body)
	return n
}

// memSize estimates the heap an entry holds once decoded: its bytes plus
// the Go structures around them (struct, header map and slices, string
// headers, counter snapshot). The memory backend charges this against its
// budget so that the budget bounds real memory, not just payload.
func (e *entry) memSize() int64 {
	n := int64(len(e.body)+len(e.key)+len(e.etag)) + 512 // entry struct, hit headers, ristretto item
	n += 64 + int64(len(e.header))*80                    // map buckets per key
	n += int64(len(e.header)+1) * 40                     // replayed: name and slice per header
	for k, vs := range e.header {
		n += int64(len(k)) + 24
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	for _, c := range e.counters {
		n += int64(len(c.name)) + 40
	}
	return n
}

func uvlen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// encode returns the binary envelope.
func (e *entry) encode() []byte {
	b := make([]byte, 0, e.size())
	b = append(b, entryMagic...)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(e.status))
	b = binary.BigEndian.AppendUint64(b, uint64(e.created))
	b = binary.BigEndian.AppendUint64(b, uint64(e.freshUntil))
	b = binary.BigEndian.AppendUint64(b, uint64(e.staleUntil))
	b = binary.BigEndian.AppendUint64(b, uint64(e.fillNanos))
	b = appendStr(b, e.etag)
	b = appendStr(b, e.key)
	b = binary.AppendUvarint(b, uint64(len(e.counters)))
	for _, c := range e.counters {
		b = appendStr(b, c.name)
		b = binary.BigEndian.AppendUint64(b, c.value)
	}
	b = binary.AppendUvarint(b, uint64(len(e.header)))
	for _, k := range sortedKeys(e.header) {
		vs := e.header[k]
		b = appendStr(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendStr(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(e.body)))
	b = append(b, e.body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads an envelope; the first failure sticks.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	if d.err {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	// A multi-byte uvarint ending in 0x00 is a non-minimal encoding, which
	// encode never writes: refusing it keeps one encoding per entry.
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err || len(d.b) < 8 {
		d.err = true
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

// count reads a number of items each taking at least min bytes, refusing
// counts the remaining input cannot hold (no huge allocations on bad input).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)/min) {
		d.err = true
		return 0
	}
	return int(n)
}

// decodeEntry parses an envelope. Any malformed input returns errCorrupt.
func decodeEntry(b []byte) (*entry, error) {
	if len(b) < entryFixed+4 || string(b[:3]) != entryMagic {
		return nil, errCorrupt
	}
	if b[3] != entryVersion {
		return nil, errCorrupt
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, errCorrupt
	}
	e := &entry{status: int(binary.BigEndian.Uint16(body[4:6]))}
	d := &decoder{b: body[6:]}
	e.created = int64(d.u64())
	e.freshUntil = int64(d.u64())
	e.staleUntil = int64(d.u64())
	e.fillNanos = int64(d.u64())
	e.etag = d.str()
	e.key = d.str()
	if n := d.count(9); n > 0 {
		e.counters = make([]counterSnap, n)
		for i := range e.counters {
			e.counters[i] = counterSnap{name: d.str(), value: d.u64()}
		}
	}
	nh := d.count(2)
	e.header = make(http.Header, nh)
	prev := ""
	for i := 0; i < nh && !d.err; i++ {
		k := d.str()
		// Names are written sorted and unique: anything else is not ours.
		if i > 0 && k <= prev {
			d.err = true
			break
		}
		prev = k
		nv := d.count(1)
		vs := make([]string, nv)
		for j := range vs {
			vs[j] = d.str()
		}
		if k == "" || d.err {
			d.err = true
			break
		}
		e.header[k] = vs
	}
	e.body = d.bytes()
	if d.err || len(d.b) != 0 || e.status < 100 || e.status > 999 {
		return nil, errCorrupt
	}
	// Copy the body out of the caller's buffer so the entry owns its bytes.
	e.body = append([]byte(nil), e.body...)
	e.prepare()
	return e, nil
}
