package redis

import (
	"strings"

	"github.com/routecache/routecache/core/backend"
)

// Invalidation messages. Every bump a Redis backend makes is published on
// InvalidationChannel, in the same script as the increment, as
//
//	<instance>/<kind>/<region>/<name>|<counter>
//
// instance is the publishing backend's (hex: Instance); kind is t (tag),
// r (region) or k (key), followed by s for a soft bump; region and name
// are escaped (escapeField: '%', '/', '|' and every byte outside visible
// ASCII become %XX), so any bytes survive and the head holds no '|'. The
// counter is everything after the first '|', under the name the engine
// stored it (hashed when long or not printable). A bump made through
// Bump or SoftBump, which carry no event, publishes the previous format,
// "<instance>|<counter>".
//
// Compatibility. A receiver of this release reads a previous-format
// message as an event naming only its counter (backend.EventCounter): it
// drops its copy of the counter and reports nothing else. A receiver of
// the previous release cuts the message at the first '|' as before: it
// takes the counter right, and the whole head for the instance, which is
// never its own (it compares it with its own bare instance), so it drops
// the counter and reports the invalidation as it always did. Receivers
// ignore '/'-separated fields after the name, for a later release to add.

// eventMessage is the message of a bump made for ev.
func (b *Backend) eventMessage(ev backend.Event) string {
	var k string
	switch ev.Kind {
	case backend.EventTag:
		k = "t"
	case backend.EventRegion:
		k = "r"
	case backend.EventKey:
		k = "k"
	default:
		return b.message(ev.Counter)
	}
	if ev.Soft {
		k += "s"
	}
	var sb strings.Builder
	sb.Grow(len(b.instance) + len(k) + len(ev.Region) + len(ev.Name) + len(ev.Counter) + 4)
	sb.WriteString(b.instance)
	sb.WriteByte('/')
	sb.WriteString(k)
	sb.WriteByte('/')
	escapeField(&sb, ev.Region)
	sb.WriteByte('/')
	escapeField(&sb, ev.Name)
	sb.WriteByte('|')
	sb.WriteString(ev.Counter)
	return sb.String()
}

// message is the previous-format message of a counter's bump.
func (b *Backend) message(name string) string { return b.instance + "|" + name }

// ParseMessage reads an invalidation message (either format): the
// publishing backend's instance and the event. ok is false for a payload
// that is not an invalidation message (no '|'). A head that does not
// parse as an event (a later format's kind, a bad escape) gives an
// EventCounter, which still names the counter to drop.
func ParseMessage(payload string) (instance string, ev backend.Event, ok bool) {
	head, counter, ok := strings.Cut(payload, "|")
	if !ok {
		return "", backend.Event{}, false
	}
	ev.Counter = counter
	instance, rest, found := strings.Cut(head, "/")
	if !found {
		return instance, ev, true
	}
	fields := strings.SplitN(rest, "/", 4) // kind, region, name and what a later release adds
	if len(fields) < 3 {
		return instance, ev, true
	}
	kind := fields[0]
	soft := strings.HasSuffix(kind, "s")
	if soft {
		kind = kind[:len(kind)-1]
	}
	var k backend.EventKind
	switch kind {
	case "t":
		k = backend.EventTag
	case "r":
		k = backend.EventRegion
	case "k":
		k = backend.EventKey
	default:
		return instance, ev, true
	}
	region, ok1 := unescapeField(fields[1])
	name, ok2 := unescapeField(fields[2])
	if !ok1 || !ok2 {
		return instance, ev, true
	}
	ev.Kind, ev.Region, ev.Name, ev.Soft = k, region, name, soft
	return instance, ev, true
}

const hexDigits = "0123456789ABCDEF"

// escapeField writes s with '%', '/', '|' and every byte outside visible
// ASCII as %XX.
func escapeField(sb *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '/' || c == '|' {
			sb.WriteByte('%')
			sb.WriteByte(hexDigits[c>>4])
			sb.WriteByte(hexDigits[c&15])
			continue
		}
		sb.WriteByte(c)
	}
}

// unescapeField undoes escapeField; ok is false for a malformed escape.
func unescapeField(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
