package backend

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// FuzzDecodeEntryChecksummed complements FuzzDecodeEntry: random bytes
// almost never carry a valid CRC-32C, so the fuzzer rarely gets past the
// checksum into the parser. Here the checksum is appended to the fuzzed
// bytes, so every input reaches the length and count checks: the decoder
// must never panic nor allocate more than the input can describe, and
// whatever it accepts re-encodes to the same bytes.
func FuzzDecodeEntryChecksummed(f *testing.F) {
	for _, e := range []*Entry{sampleEntry(), {Status: 200}} {
		b := e.Encode()
		f.Add(b[:len(b)-4]) // without its checksum
	}
	f.Add([]byte("RCE\x01\x00\xc8"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := binary.BigEndian.AppendUint32(append([]byte(nil), b...), crc32.Checksum(b, crcTable))
		e, err := DecodeEntry(in)
		if err != nil {
			return
		}
		if got := e.Encode(); !bytes.Equal(got, in) {
			t.Fatalf("re-encode differs:\n%x\n%x", got, in)
		}
		if e.Size() != len(in) {
			t.Fatalf("size %d for %d encoded bytes", e.Size(), len(in))
		}
	})
}
