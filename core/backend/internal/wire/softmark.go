package wire

import (
	"strconv"
	"strings"

	"github.com/routecache/routecache/core/backend"
)

// SoftKey is where a counter's soft mark lives ("s|" cannot start a
// counter name, which starts with the region prefix).
func SoftKey(name string) string { return "s|" + name }

func EncodeMark(m backend.SoftMark) string {
	return strconv.FormatUint(m.Old, 10) + ":" + strconv.FormatUint(m.New, 10)
}

func DecodeMark(b []byte) backend.SoftMark {
	o, n, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok {
		return backend.SoftMark{}
	}
	ov, err1 := strconv.ParseUint(o, 10, 64)
	nv, err2 := strconv.ParseUint(n, 10, 64)
	if err1 != nil || err2 != nil {
		return backend.SoftMark{}
	}
	return backend.SoftMark{Old: ov, New: nv}
}
