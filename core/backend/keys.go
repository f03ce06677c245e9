package backend

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unsafe"
)

// EntryKey is where a store shared beyond the process keeps the entry of
// a canonical key (KeysHashed): the region's namespace ns (its prefix
// and ':'), "e:", then the SHA-256 of the canonical key in hex.
func EntryKey(ns, canonical string) string { return string(AppendEntryKey(nil, ns, canonical)) }

// AppendEntryKey appends EntryKey(ns, canonical) to dst.
func AppendEntryKey(dst []byte, ns, canonical string) []byte {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(canonical), len(canonical)))
	dst = append(dst, ns...)
	dst = append(dst, "e:"...)
	return hex.AppendEncode(dst, sum[:])
}

// RemoteEntryKey is EntryKey for a backend given canonical keys
// (KeysNear). A canonical key begins with its region's namespace, the
// prefix up to and including the first ':' (prefixes hold no ':'), so the
// key names its own namespace: the remote key is the same as the one an
// instance without near cache uses.
func RemoteEntryKey(canonical string) string {
	i := strings.IndexByte(canonical, ':')
	return EntryKey(canonical[:i+1], canonical)
}
