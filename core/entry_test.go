package core

import (
	"bytes"
	"net/http"
	"reflect"
	"testing"
	"time"
)

func sampleEntry() *entry {
	e := &entry{
		status: 200,
		header: http.Header{
			"Content-Type": {"application/json"},
			"X-Multi":      {"1", "2", ""},
			"Etag":         {`"abc"`},
		},
		body:       []byte(`{"id":1}`),
		created:    1_700_000_000_000_000_000,
		freshUntil: 1_700_000_300_000_000_000,
		staleUntil: 1_700_000_360_000_000_000,
		fillNanos:  12_345_678,
		etag:       `"abc"`,
		key:        "rc:3:rk1...",
		counters:   []counterSnap{{"rc:v:r:a", 7}, {"rc:v:t:x", 1 << 62}},
	}
	e.prepare()
	return e
}

func TestEntryRoundTrip(t *testing.T) {
	e := sampleEntry()
	b := e.encode()
	if len(b) != e.size() {
		t.Fatalf("size() = %d, encoded %d", e.size(), len(b))
	}
	d, err := decodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, e) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", d, e)
	}
	// The decoded entry owns its body.
	b[len(b)-5] ^= 0xff
	if !bytes.Equal(d.body, e.body) {
		t.Fatal("decoded body aliases the input")
	}
}

func TestEntryEmptyParts(t *testing.T) {
	e := &entry{status: 204, header: http.Header{}, key: "k"}
	e.prepare()
	d, err := decodeEntry(e.encode())
	if err != nil {
		t.Fatal(err)
	}
	if d.status != 204 || len(d.body) != 0 || len(d.header) != 0 || d.key != "k" {
		t.Fatalf("got %#v", d)
	}
}

func TestEntryCorruption(t *testing.T) {
	b := sampleEntry().encode()
	// Every truncation and every single-byte flip is detected.
	for i := 0; i < len(b); i++ {
		if _, err := decodeEntry(b[:i]); err == nil {
			t.Fatalf("truncation to %d bytes decoded", i)
		}
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		if _, err := decodeEntry(c); err == nil {
			t.Fatalf("flip at %d decoded", i)
		}
	}
	if _, err := decodeEntry(append(append([]byte(nil), b...), 0)); err == nil {
		t.Fatal("trailing byte decoded")
	}
}

// FuzzDecodeEntry: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(sampleEntry().encode())
	f.Add([]byte("RCE\x01"))
	f.Add([]byte{})
	e := &entry{status: 200, header: http.Header{}, key: ""}
	f.Add(e.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if got := e.encode(); !bytes.Equal(got, b) {
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
	b := want.encode()
	s := string(b)
	fromString, err := decodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromString.encode(), b) {
		t.Fatal("string decode does not round-trip")
	}
	buf := bytes.Clone(b)
	fromBuf, err := decodeEntry(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if !bytes.Equal(fromBuf.encode(), b) {
		t.Fatal("decodeEntry kept a view of the caller's buffer")
	}
	for _, e := range []*entry{fromString, fromBuf} {
		ct := e.header["Content-Type"]
		if cap(ct) != len(ct) {
			t.Fatalf("header slice len %d cap %d: an append would write over the next header", len(ct), cap(ct))
		}
		_ = append(ct, "x")
		if !bytes.Equal(e.encode(), b) {
			t.Fatal("append to one header changed the entry")
		}
		if e.clValue[0] != "8" || e.lastModified != (time.Time{}) {
			t.Fatalf("derived fields %q %v", e.clValue[0], e.lastModified)
		}
	}
	if _, err := decodeShared([]byte(s[:len(s)-1])); err == nil {
		t.Fatal("truncated value decoded")
	}
}
