package core

import (
	"bytes"
	"net/http"
	"reflect"
	"testing"
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
