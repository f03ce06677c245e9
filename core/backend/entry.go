package backend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// The stored envelope. Layout of version 1 (all integers big-endian or
// unsigned varints, strings and byte slices length-prefixed by a uvarint):
//
//	magic "RCE" | version 1 | status u16 | created i64 | fresh-until i64 |
//	stale-until i64 | swr-until i64 | fill-nanos i64 | etag str | canonical key str | n-counters uv |
//	{name str, value u64}* | n-headers uv | {name str, n-values uv, {value str}*}* |
//	body bytes | crc32c u32 (of everything before it)
//
// The decoder checks every length against the bytes left and the checksum,
// so a truncated or corrupted value decodes to an error (served as a miss),
// never a panic and never a wrong response.
const (
	entryMagic   = "RCE"
	entryVersion = 2
	// entryV1 is the previous version, still decoded: it has no
	// stale-while-revalidate end (SWRUntil is 0).
	entryV1 = 1
	// entryFixed is the size of magic, version, status and five
	// timestamps (four in version 1).
	entryFixed   = 3 + 1 + 2 + 8*5
	entryFixedV1 = entryFixed - 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt reports a stored value that does not decode to an entry:
// the engine serves it as a miss and overwrites it.
var ErrCorrupt = errors.New("routecache: corrupt entry")

// CounterSnap is the value an invalidation counter had before the handler
// that produced an entry ran.
type CounterSnap struct {
	Name  string
	Value uint64
}

// Entry is one cached response, the envelope every backend stores. It is
// immutable once stored: hits share it, and neither a backend nor a
// caller of Load may modify one (see Backend for ownership). The stored
// fields are the first eleven; the others are derived by Prepare (or by the
// decoder) and never stored.
type Entry struct {
	Status     int
	Header     http.Header // replayable headers only
	Body       []byte
	Created    int64 // unix nanoseconds
	FreshUntil int64 // unix nanoseconds: fresh before it
	// StaleUntil is when the entry stops being usable at all: the end of
	// the longer of its stale-while-revalidate and stale-if-error windows.
	// Backends keep it until then.
	StaleUntil int64
	// SWRUntil is the end of its stale-while-revalidate window (between
	// FreshUntil and StaleUntil; the rest up to StaleUntil is
	// stale-if-error only). 0 in an entry of envelope version 1, whose
	// windows are its region's.
	SWRUntil  int64
	FillNanos int64 // how long the handler took: XFetch's delta
	ETag      string
	Key       string // canonical key text, compared on every hit
	Counters  []CounterSnap

	// derived on creation or decode, never stored
	CLValue  [1]string // the Content-Length header value, shared by hits
	clDigits [20]byte  // CLValue[0]'s bytes
	// headerMem is MemSize's share of Header, summed as Replayed was
	// listed (by Prepare or the decoder), the entry being immutable
	// since; 0: not summed. (In the padding after clDigits: an Entry
	// allocated with more (core's) stays within its size class.)
	headerMem    uint32
	LastModified time.Time
	// Producer identifies what stored the entry in this process: the
	// engine sets it (to its route) before the store and compares it by
	// identity on a hit. It is nil for entries decoded from a stored
	// value. Backends neither read nor set it.
	Producer any
	// Replayed lists the headers a hit writes, Content-Length included,
	// in a slice: iterating a map on every hit costs more than the writes.
	Replayed []HeaderValues
	// hit caches the Age and Cache-Status values of the current second.
	hit atomic.Pointer[HitHeaders]
	// Derived holds what the engine derives from the entry once and reuses
	// on its hits (a decoded representation's headers). Never stored.
	Derived atomic.Value
}

// HeaderValues is one header of a replayed response. Its values are
// handed out with len == cap, so an Add by later code copies them instead
// of writing into the entry.
type HeaderValues struct {
	Name   string
	Values []string
}

// HitHeaders are the per-second header values of an entry's hits.
type HitHeaders struct {
	Age, TTL          int64
	AgeV, CacheStatus []string
}

// sharedHits holds recently built hit headers for any entry, indexed by
// age and ttl. An entry decoded from a remote value lives for one request,
// so its own cache (entry.hit) never serves a second hit; this table lets
// it reuse the values another entry built for the same age and ttl.
var sharedHits [64]atomic.Pointer[HitHeaders]

// LastHitHeaders returns the values HitHeaders returned last for the
// entry, or nil: a caller whose age and ttl they match uses them without
// HitHeaders' call (this is inlined).
func (e *Entry) LastHitHeaders() *HitHeaders { return e.hit.Load() }

// HitHeaders returns the Age and Cache-Status values for a hit age
// seconds after creation with ttl seconds of freshness left, building
// them at most once per second per entry.
func (e *Entry) HitHeaders(age, ttl int64) *HitHeaders {
	if h := e.hit.Load(); h != nil && h.Age == age && h.TTL == ttl {
		return h
	}
	slot := &sharedHits[uint64(age*31+ttl)%uint64(len(sharedHits))]
	if h := slot.Load(); h != nil && h.Age == age && h.TTL == ttl {
		e.hit.Store(h)
		return h
	}
	h := &HitHeaders{
		Age: age, TTL: ttl,
		AgeV:        []string{strconv.FormatInt(age, 10)},
		CacheStatus: []string{"routecache; hit; ttl=" + strconv.FormatInt(ttl, 10)},
	}
	e.hit.Store(h)
	slot.Store(h)
	return h
}

// Prepare computes the derived fields used on every hit. LastModified is
// parsed from the Last-Modified header unless already set (by a creator
// that formatted the header from it). Replayed is listed from Header
// unless it lists some already (a decoder's); a creator may give it an
// empty slice whose capacity the list is built in.
func (e *Entry) Prepare() {
	n := len(strconv.AppendInt(e.clDigits[:0], int64(len(e.Body)), 10))
	e.CLValue[0] = unsafe.String(&e.clDigits[0], n) // written once, here
	if len(e.Replayed) == 0 {                       // parseEntry lists them as it decodes
		// Built in the capacity a creator gave Replayed (empty), if enough.
		rp := e.Replayed[:0]
		if cap(rp) < len(e.Header)+1 {
			rp = make([]HeaderValues, 0, len(e.Header)+1)
		}
		mem := int64(0) // MemSize's share of the headers, in the same pass
		for k, vs := range e.Header {
			mem += int64(len(k)) + 24
			for _, v := range vs {
				mem += int64(len(v)) + 16
			}
			if k == "Content-Length" {
				continue // always the body's own length
			}
			rp = append(rp, HeaderValues{k, vs[:len(vs):len(vs)]})
		}
		sortHeaderValues(rp)
		e.Replayed = rp
		e.headerMem = 0
		if mem <= math.MaxUint32 {
			e.headerMem = uint32(mem)
		}
	}
	e.Replayed = append(e.Replayed, HeaderValues{"Content-Length", e.CLValue[:]})
	if e.LastModified.IsZero() {
		e.parseLastModified()
	}
}

// PrepareListed is Prepare for a creator that listed the headers itself,
// as it built e.Header, so that Prepare need not walk the map: rp holds
// every header of e.Header but Content-Length, once, with the values the
// map holds (len == cap), in any order (it is sorted in place and becomes
// Replayed); mem is the headers' share of MemSize, Content-Length's
// included: per header, the length of its name plus 24, and per value its
// length plus 16.
func (e *Entry) PrepareListed(rp []HeaderValues, mem int64) {
	sortHeaderValues(rp)
	e.Replayed = rp
	e.headerMem = 0
	if mem <= math.MaxUint32 {
		e.headerMem = uint32(mem)
	}
	e.Prepare()
}

// HeaderMem is one header's share of MemSize (see PrepareListed).
func HeaderMem(name string, values []string) int64 {
	n := int64(len(name)) + 24
	for _, v := range values {
		n += int64(len(v)) + 16
	}
	return n
}

// parseLastModified sets LastModified from the Last-Modified header.
func (e *Entry) parseLastModified() {
	if lm := e.Header["Last-Modified"]; len(lm) > 0 && lm[0] != "" {
		if t, ok := parseIMFFixdate(lm[0]); ok {
			e.LastModified = t
		} else if t, err := http.ParseTime(lm[0]); err == nil {
			e.LastModified = t
		}
	}
}

// sortHeaderValues sorts headers in name order, in place (no slice of
// names to allocate): by insertion for the few headers of most responses,
// where the general sort's set-up costs more than the sort.
func sortHeaderValues(rp []HeaderValues) {
	if len(rp) > 12 {
		slices.SortFunc(rp, func(a, b HeaderValues) int { return strings.Compare(a.Name, b.Name) })
		return
	}
	for i := 1; i < len(rp); i++ {
		for j := i; j > 0 && rp[j].Name < rp[j-1].Name; j-- {
			rp[j], rp[j-1] = rp[j-1], rp[j]
		}
	}
}

// parseIMFFixdate parses the one date format responses are sent with
// ("Mon, 02 Jan 2006 15:04:05 GMT", http.TimeFormat) with no allocation
// and a tenth of time.Parse's work. It accepts a subset of what
// http.ParseTime accepts, with the same result; anything else (other
// formats, other letter cases) is left to http.ParseTime.
func parseIMFFixdate(s string) (time.Time, bool) {
	if len(s) != len(http.TimeFormat) || s[3:5] != ", " || s[7] != ' ' || s[11] != ' ' ||
		s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	wd := strings.Index("MonTueWedThuFriSatSun", s[:3])
	m := strings.Index("JanFebMarAprMayJunJulAugSepOctNovDec", s[8:11])
	if wd < 0 || wd%3 != 0 || m < 0 || m%3 != 0 {
		return time.Time{}, false
	}
	month := time.Month(m/3 + 1)
	day, ok1 := digits(s[5:7])
	year, ok2 := digits(s[12:16])
	hour, ok3 := digits(s[17:19])
	minute, ok4 := digits(s[20:22])
	sec, ok5 := digits(s[23:25])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || hour > 23 || minute > 59 || sec > 59 ||
		day < 1 || day > daysIn(month, year) {
		return time.Time{}, false
	}
	return time.Date(year, month, day, hour, minute, sec, 0, time.UTC), true
}

// digits reads a fixed-width decimal number.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysIn is the number of days of a month in the proleptic Gregorian calendar.
func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Size is the number of bytes the encoded entry takes; the memory backend
// charges it against the byte budget.
func (e *Entry) Size() int {
	n := entryFixed + 4
	n += uvlen(len(e.ETag)) + len(e.ETag)
	n += uvlen(len(e.Key)) + len(e.Key)
	n += uvlen(len(e.Counters))
	for _, c := range e.Counters {
		n += uvlen(len(c.Name)) + len(c.Name) + 8
	}
	n += uvlen(len(e.Header))
	for k, vs := range e.Header {
		n += uvlen(len(k)) + len(k) + uvlen(len(vs))
		for _, v := range vs {
			n += uvlen(len(v)) + len(v)
		}
	}
	n += uvlen(len(e.Body)) + len(e.Body)
	return n
}

// TrimBody gives the body a backing array of its own length when its
// capacity is more than the allocator would have made of that length: a
// recorded body grows by doubling (or is pre-sized from a Content-Length
// that may overstate it), and an in-process store keeps the whole
// allocation alive. Call it before the entry is shared; a body within the
// allocator's rounding is kept as it is, copying it would free nothing.
func (e *Entry) TrimBody() {
	if c, n := cap(e.Body), len(e.Body); roundsAbove(n, c) {
		if b := append([]byte(nil), e.Body...); cap(b) < c {
			e.Body = b
		}
	}
}

// roundsAbove reports whether capacity c is more than the allocator makes
// of a slice of length n: size classes waste at most an eighth above
// 256 bytes, and large objects are rounded to 8 KiB pages.
func roundsAbove(n, c int) bool {
	switch {
	case c <= n:
		return false
	case n <= 256:
		return true // copying a small body is cheap; cap(b) < c decides
	case n > 32<<10:
		return c > (n+8191)&^8191
	}
	return c-n > n/8
}

// MemSize estimates the heap an entry holds once decoded: its bytes plus
// the Go structures around them (struct, header map and slices, string
// headers, counter snapshot). The memory backend charges this against its
// budget so that the budget bounds real memory, not just payload; its
// store adds its own per-item overhead (the item and its slot,
// clockstore.ItemOverhead, 96 bytes) on top.
func (e *Entry) MemSize() int64 {
	// The body's capacity, not its length: every byte of the allocation
	// stays reachable (append rounds capacity up to the allocator's size
	// class, so this is the allocation itself).
	n := int64(cap(e.Body)+len(e.Key)+len(e.ETag)) + 320 // entry struct, hit headers
	n += 64 + int64(len(e.Header))*80                    // map buckets per key
	n += int64(len(e.Header)+1) * 40                     // replayed: name and slice per header
	if e.headerMem != 0 {
		n += int64(e.headerMem) // summed as Replayed was listed
	} else {
		for k, vs := range e.Header {
			n += int64(len(k)) + 24
			for _, v := range vs {
				n += int64(len(v)) + 16
			}
		}
	}
	for _, c := range e.Counters {
		n += int64(len(c.Name)) + 40
	}
	return n
}

func uvlen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// Encode returns the binary envelope.
func (e *Entry) Encode() []byte {
	b := make([]byte, 0, e.Size())
	b = append(b, entryMagic...)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(e.Status))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Created))
	b = binary.BigEndian.AppendUint64(b, uint64(e.FreshUntil))
	b = binary.BigEndian.AppendUint64(b, uint64(e.StaleUntil))
	b = binary.BigEndian.AppendUint64(b, uint64(e.SWRUntil))
	b = binary.BigEndian.AppendUint64(b, uint64(e.FillNanos))
	b = appendStr(b, e.ETag)
	b = appendStr(b, e.Key)
	b = binary.AppendUvarint(b, uint64(len(e.Counters)))
	for _, c := range e.Counters {
		b = appendStr(b, c.Name)
		b = binary.BigEndian.AppendUint64(b, c.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for _, k := range sortedKeys(e.Header) {
		vs := e.Header[k]
		b = appendStr(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendStr(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	b = append(b, e.Body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads an envelope; the first failure sticks. What it returns
// views its input: strings and slices share the input's bytes.
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

// str views the next string: valid as long as the input is never written.
func (d *decoder) str() string { return unsafeString(d.bytes()) }

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

// DecodeEntry parses an envelope held in a buffer the caller may reuse or
// write to: the entry gets its own copy of the bytes (one allocation),
// which its strings and body view. Any malformed input returns errCorrupt.
func DecodeEntry(b []byte) (*Entry, error) {
	return DecodeShared(bytes.Clone(b))
}

// DecodeString parses an envelope held in a string (a go-redis reply).
// Strings are immutable, so the entry views s without copying anything.
func DecodeString(s string) (*Entry, error) {
	return DecodeShared(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// envelopeOK checks the magic, version and checksum of an envelope.
func envelopeOK(b []byte) bool {
	if len(b) < entryFixedV1+4 || string(b[:3]) != entryMagic ||
		b[3] != entryVersion && b[3] != entryV1 || b[3] == entryVersion && len(b) < entryFixed+4 {
		return false
	}
	return crc32.Checksum(b[:len(b)-4], crcTable) == binary.BigEndian.Uint32(b[len(b)-4:])
}

// DecodeShared parses an envelope in bytes that nobody writes to ever
// again (a reply buffer the client allocated for this call, a string's
// bytes, a private copy): the entry's strings, header values and body are
// views of b, not copies. An entry is never modified once built, so the
// views stay valid for as long as the entry is reachable.
func DecodeShared(b []byte) (*Entry, error) {
	if !envelopeOK(b) {
		return nil, ErrCorrupt
	}
	return parseEntry(b)
}

// decodedEntry is an entry allocated together with room for the usual
// number of counters, header values and replayed headers, so that a
// decode allocates once for all of them.
type decodedEntry struct {
	e        Entry
	counters [4]CounterSnap
	values   [6]string
	replayed [8]HeaderValues
}

// parseEntry decodes an envelope envelopeOK accepted; the entry views b.
func parseEntry(b []byte) (*Entry, error) {
	body := b[:len(b)-4]
	de := &decodedEntry{}
	e := &de.e
	e.Status = int(binary.BigEndian.Uint16(body[4:6]))
	d := decoder{b: body[6:]}
	e.Created = int64(d.u64())
	e.FreshUntil = int64(d.u64())
	e.StaleUntil = int64(d.u64())
	if b[3] == entryVersion {
		e.SWRUntil = int64(d.u64())
	}
	e.FillNanos = int64(d.u64())
	e.ETag = d.str()
	e.Key = d.str()
	if n := d.count(9); n > 0 {
		if n <= len(de.counters) {
			e.Counters = de.counters[:n:n]
		} else {
			e.Counters = make([]CounterSnap, n)
		}
		for i := range e.Counters {
			e.Counters[i] = CounterSnap{Name: d.str(), Value: d.u64()}
		}
	}
	nh := d.count(2)
	e.Header = make(http.Header, nh)
	// One backing array for every header's values (most headers have one);
	// each header gets a slice of it with len == cap, so an append by a
	// reader copies instead of writing over the next header's values.
	all := de.values[:0]
	e.Replayed = de.replayed[:0]
	hmem := int64(0) // MemSize's share of the headers
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
		first := len(all)
		for range nv {
			all = append(all, d.str())
		}
		if k == "" || d.err {
			d.err = true
			break
		}
		e.Header[k] = all[first:len(all):len(all)]
		hmem += int64(len(k)) + 24
		for _, v := range all[first:] {
			hmem += int64(len(v)) + 16
		}
		if k != "Content-Length" {
			e.Replayed = append(e.Replayed, HeaderValues{k, e.Header[k]})
		}
	}
	if e.Body = d.bytes(); len(e.Body) == 0 {
		e.Body = nil
	}
	if d.err || len(d.b) != 0 || e.Status < 100 || e.Status > 999 {
		return nil, ErrCorrupt
	}
	if hmem <= math.MaxUint32 {
		e.headerMem = uint32(hmem) // summed above, with Replayed listed
	}
	e.Prepare()
	return e, nil
}

// sortedKeys returns the header's names in order (the encoding writes
// them sorted, so one entry has one encoding).
func sortedKeys(h http.Header) []string {
	return slices.Sorted(maps.Keys(h))
}

// unsafeString views b as a string; b must never be written again.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
