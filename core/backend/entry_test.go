package backend

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/http"
	"reflect"
	"testing"
	"time"
)

func sampleEntry() *Entry {
	e := &Entry{
		Status: 200,
		Header: http.Header{
			"Content-Type": {"application/json"},
			"X-Multi":      {"1", "2", ""},
			"Etag":         {`"abc"`},
		},
		Body:       []byte(`{"id":1}`),
		Created:    1_700_000_000_000_000_000,
		FreshUntil: 1_700_000_300_000_000_000,
		StaleUntil: 1_700_000_360_000_000_000,
		SWRUntil:   1_700_000_330_000_000_000,
		FillNanos:  12_345_678,
		ETag:       `"abc"`,
		Key:        "rc:3:rk1...",
		Counters:   []CounterSnap{{"rc:v:r:a", 7}, {"rc:v:t:x", 1 << 62}},
	}
	e.Prepare()
	return e
}

func TestEntryRoundTrip(t *testing.T) {
	e := sampleEntry()
	b := e.Encode()
	if len(b) != e.Size() {
		t.Fatalf("size() = %d, encoded %d", e.Size(), len(b))
	}
	d, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, e) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", d, e)
	}
	// The decoded entry owns its body.
	b[len(b)-5] ^= 0xff
	if !bytes.Equal(d.Body, e.Body) {
		t.Fatal("decoded body aliases the input")
	}
}

// An entry stored by the previous release (envelope version 1, without
// the stale-while-revalidate end) still decodes, with SWRUntil 0: the
// engine then applies its region's windows.
func TestEntryVersion1Decodes(t *testing.T) {
	e := sampleEntry()
	b := e.Encode()
	// Version 1 is version 2 without swr-until, which follows the three
	// timestamps after magic, version and status.
	at := 3 + 1 + 2 + 8*3
	v1 := append(append([]byte(nil), b[:at]...), b[at+8:len(b)-4]...)
	v1[3] = 1
	v1 = binary.BigEndian.AppendUint32(v1, crc32.Checksum(v1, crcTable))
	d, err := DecodeEntry(v1)
	if err != nil {
		t.Fatalf("version 1 envelope: %v", err)
	}
	if d.SWRUntil != 0 || d.FreshUntil != e.FreshUntil || d.StaleUntil != e.StaleUntil || d.FillNanos != e.FillNanos ||
		d.Key != e.Key || !bytes.Equal(d.Body, e.Body) {
		t.Fatalf("version 1 decode: got %+v", d)
	}
	v1[3] = 3
	if _, err := DecodeEntry(v1); err == nil {
		t.Fatal("an unknown version decoded")
	}
}

func TestEntryEmptyParts(t *testing.T) {
	e := &Entry{Status: 204, Header: http.Header{}, Key: "k"}
	e.Prepare()
	d, err := DecodeEntry(e.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != 204 || len(d.Body) != 0 || len(d.Header) != 0 || d.Key != "k" {
		t.Fatalf("got %#v", d)
	}
}

func TestEntryCorruption(t *testing.T) {
	b := sampleEntry().Encode()
	// Every truncation and every single-byte flip is detected.
	for i := 0; i < len(b); i++ {
		if _, err := DecodeEntry(b[:i]); err == nil {
			t.Fatalf("truncation to %d bytes decoded", i)
		}
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		if _, err := DecodeEntry(c); err == nil {
			t.Fatalf("flip at %d decoded", i)
		}
	}
	if _, err := DecodeEntry(append(append([]byte(nil), b...), 0)); err == nil {
		t.Fatal("trailing byte decoded")
	}
}

// FuzzDecodeEntry: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(sampleEntry().Encode())
	f.Add([]byte("RCE\x01"))
	f.Add([]byte{})
	e := &Entry{Status: 200, Header: http.Header{}, Key: ""}
	f.Add(e.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		if got := e.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs:\n%x\n%x", got, b)
		}
	})
}

// FuzzParseIMFFixdate: the allocation-free date parser accepts only what
// http.ParseTime accepts, with the same result.
func FuzzParseIMFFixdate(f *testing.F) {
	for _, s := range []string{
		"Tue, 25 Nov 2025 22:46:45 GMT", "Sun, 06 Nov 1994 08:49:37 GMT", "Sat, 29 Feb 2000 00:00:00 GMT",
		"Sat, 29 Feb 1900 00:00:00 GMT", "Mon, 31 Apr 2024 00:00:00 GMT", "Mon, 01 Jan 0000 23:59:59 GMT",
		"mon, 01 jan 2024 00:00:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Mon, 01 Jan 2024 24:00:00 GMT", "Mon, 01 Jan 2024 00:60:00 GMT", "Mon, 01 Jan 2024 00:00:60 GMT",
		"Mon, 00 Jan 2024 00:00:00 GMT", "Mon, 1a Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 00:00:00 UTC",
		"Mon, 01 Jan -024 00:00:00 GMT", "Mon, 01 Jan 2024 +0:00:00 GMT", "onT, 01 Jan 2024 00:00:00 GMT",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseIMFFixdate(s)
		if !ok {
			return
		}
		want, err := http.ParseTime(s)
		if err != nil {
			t.Fatalf("%q: accepted as %v, http.ParseTime refuses it: %v", s, got, err)
		}
		if got != want {
			t.Fatalf("%q: %v, http.ParseTime %v", s, got, want)
		}
	})
}

// TestDecodeViews: an entry decoded from a string views it, one decoded
// from a buffer the caller keeps owns a copy (a later write to the buffer
// does not reach it), and header values share one backing array without
// an append on one header overwriting another's values.
func TestDecodeViews(t *testing.T) {
	want := sampleEntry()
	b := want.Encode()
	s := string(b)
	fromString, err := DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromString.Encode(), b) {
		t.Fatal("string decode does not round-trip")
	}
	buf := bytes.Clone(b)
	fromBuf, err := DecodeEntry(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if !bytes.Equal(fromBuf.Encode(), b) {
		t.Fatal("decodeEntry kept a view of the caller's buffer")
	}
	for _, e := range []*Entry{fromString, fromBuf} {
		ct := e.Header["Content-Type"]
		if cap(ct) != len(ct) {
			t.Fatalf("header slice len %d cap %d: an append would write over the next header", len(ct), cap(ct))
		}
		_ = append(ct, "x")
		if !bytes.Equal(e.Encode(), b) {
			t.Fatal("append to one header changed the entry")
		}
		if e.CLValue[0] != "8" || e.LastModified != (time.Time{}) {
			t.Fatalf("derived fields %q %v", e.CLValue[0], e.LastModified)
		}
	}
	if _, err := DecodeShared([]byte(s[:len(s)-1])); err == nil {
		t.Fatal("truncated value decoded")
	}
}

// PrepareListed, given the headers listed in any order with their share
// of MemSize (HeaderMem), prepares the entry as Prepare does walking them.
func TestPrepareListedAsPrepare(t *testing.T) {
	h := http.Header{"B": {"2", "3"}, "A": {"1"}, "Etag": {`"e"`}, "Content-Length": {"9"}, "Last-Modified": {"Mon, 02 Jan 2006 15:04:05 GMT"}}
	walked := &Entry{Status: 200, Header: h, Body: []byte("body")}
	walked.Prepare()
	listed := &Entry{Status: 200, Header: h, Body: []byte("body")}
	var rp []HeaderValues
	var mem int64
	for _, k := range []string{"Last-Modified", "B", "Etag", "A"} {
		rp = append(rp, HeaderValues{Name: k, Values: h[k][:len(h[k]):len(h[k])]})
	}
	for k, vs := range h {
		mem += HeaderMem(k, vs)
	}
	listed.PrepareListed(rp, mem)
	if fmt.Sprint(listed.Replayed) != fmt.Sprint(walked.Replayed) {
		t.Fatalf("replayed %v, Prepare's %v", listed.Replayed, walked.Replayed)
	}
	if listed.MemSize() != walked.MemSize() || !listed.LastModified.Equal(walked.LastModified) || listed.CLValue != walked.CLValue {
		t.Fatalf("MemSize %d LastModified %v CL %v; Prepare's %d %v %v", listed.MemSize(), listed.LastModified, listed.CLValue, walked.MemSize(), walked.LastModified, walked.CLValue)
	}
}
