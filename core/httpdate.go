package core

import (
	"net/http"
	"sync/atomic"
	"time"
)

// formattedDate is one second's HTTP date.
type formattedDate struct {
	sec int64
	s   string
}

// lastDate is the HTTP date formatted last: fills in the same second
// share it instead of formatting it again.
var lastDate atomic.Pointer[formattedDate]

// httpDate formats t in the HTTP date format (http.TimeFormat, in UTC),
// formatting each second once.
func httpDate(t time.Time) string {
	sec := t.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &formattedDate{sec: sec, s: t.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.s
}
