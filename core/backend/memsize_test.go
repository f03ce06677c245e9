package backend

import (
	"net/http"
	"testing"
)

// MemSize charges the same for an entry whether Prepare (or the decoder)
// summed its headers' share or MemSize sums them itself.
func TestMemSizeSameWithHeadersSummedByPrepare(t *testing.T) {
	h := http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"1", "22", ""}, "Content-Length": {"3"}, "Etag": {`"x"`}}
	plain := &Entry{Status: 200, Header: h, Body: []byte("abc"), Key: "k", ETag: `"x"`, Counters: []CounterSnap{{Name: "c", Value: 1}}}
	want := plain.MemSize()
	prepared := &Entry{Status: 200, Header: h, Body: []byte("abc"), Key: "k", ETag: `"x"`, Counters: []CounterSnap{{Name: "c", Value: 1}}}
	prepared.Prepare()
	if prepared.headerMem == 0 {
		t.Fatal("Prepare did not sum the headers")
	}
	if got := prepared.MemSize(); got != want {
		t.Fatalf("MemSize %d after Prepare, %d without", got, want)
	}
	dec, err := DecodeEntry(prepared.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.MemSize(); got != want {
		t.Fatalf("MemSize %d decoded, %d without Prepare", got, want)
	}
}

// Prepare builds Replayed in the capacity a creator gave it, sorted, with
// Content-Length last; a longer list gets an array of its own.
func TestPrepareListsReplayedInGivenCapacity(t *testing.T) {
	var buf [4]HeaderValues
	e := &Entry{Header: http.Header{"B": {"2"}, "A": {"1"}, "Content-Length": {"9"}}, Body: []byte("xy"), Replayed: buf[:0]}
	e.Prepare()
	if len(e.Replayed) != 3 || &e.Replayed[0] != &buf[0] || e.Replayed[0].Name != "A" || e.Replayed[1].Name != "B" ||
		e.Replayed[2].Name != "Content-Length" || e.Replayed[2].Values[0] != "2" {
		t.Fatalf("Replayed %v", e.Replayed)
	}
	h := http.Header{}
	for _, k := range []string{"E", "D", "C", "B", "A"} {
		h[k] = []string{k}
	}
	e = &Entry{Header: h, Replayed: buf[:0]}
	e.Prepare()
	if len(e.Replayed) != 6 || &e.Replayed[0] == &buf[0] || e.Replayed[0].Name != "A" || e.Replayed[4].Name != "E" {
		t.Fatalf("Replayed %v", e.Replayed)
	}
}
