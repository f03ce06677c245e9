package difftest

// corpus is the list of hostile request forms. A case's partner is the
// request it would share an entry with if the cache ignored what tells
// them apart; both directions of every such pair are sent by TestPairs.
var corpus = []reqCase{
	// ---- /p/:id, the default key ----
	{name: "p-base", target: "/p/1"},
	{name: "p-A", target: "/p/A", partner: "p-pct41"},
	{name: "p-pct41", target: "/p/%41", partner: "p-A"},
	{name: "p-lower-a", target: "/p/a", partner: "p-A"},
	{name: "p-case-route", target: "/P/1", partner: "p-base"},
	{name: "p-lt-raw", target: "/p/<", partner: "p-pct3C"},
	{name: "p-pct3C", target: "/p/%3C", partner: "p-lt-raw"},
	{name: "p-pct3c-lower", target: "/p/%3c", partner: "p-pct3C"},
	{name: "p-quote-raw", target: `/p/"`, partner: "p-pct22"},
	{name: "p-pct22", target: "/p/%22", partner: "p-quote-raw"},
	{name: "p-brace-raw", target: "/p/{", partner: "p-pct7B"},
	{name: "p-pct7B", target: "/p/%7B", partner: "p-brace-raw"},
	{name: "p-pipe-raw", target: "/p/|", partner: "p-pct7C"},
	{name: "p-pct7C", target: "/p/%7C", partner: "p-pipe-raw"},
	{name: "p-caret-raw", target: "/p/^", partner: "p-pct5E"},
	{name: "p-pct5E", target: "/p/%5E", partner: "p-caret-raw"},
	{name: "p-lt-pct41", target: "/p/<%41", partner: "p-pct3CA"},
	{name: "p-pct3CA", target: "/p/%3CA", partner: "p-lt-pct41"},
	{name: "p-lt-A", target: "/p/<A", partner: "p-pct3CA"},
	{name: "p-dot", target: "/p/./1", partner: "p-base"},
	{name: "p-dotdot", target: "/x/../p/1", partner: "p-base"},
	{name: "p-dotdot-id", target: "/p/2/../1", partner: "p-base"},
	{name: "p-pct2e-dot", target: "/p/%2e%2e/p/1", partner: "p-base"},
	{name: "p-dslash-front", target: "//p/1", partner: "p-base"},
	{name: "p-dslash-mid", target: "/p//1", partner: "p-base"},
	{name: "p-trailing-slash", target: "/p/1/", partner: "p-base"},
	{name: "p-pct2F", target: "/p/a%2Fb", partner: "p-pct2f"},
	{name: "p-pct2f", target: "/p/a%2fb", partner: "p-pct2F"},
	{name: "p-raw-utf8", target: "/p/\xc3\xa9", partner: "p-pct-utf8"},
	{name: "p-pct-utf8", target: "/p/%C3%A9", partner: "p-raw-utf8"},
	{name: "p-raw-ff", target: "/p/\xff", partner: "p-pctFF"},
	{name: "p-pctFF", target: "/p/%FF", partner: "p-raw-ff"},
	{name: "p-pct00", target: "/p/%00", partner: "p-base"},
	{name: "p-absolute-uri", target: "http://other.test/p/1", partner: "p-base"},
	// query strings
	{name: "p-q-dup", target: "/p/1?a=1&a=2", partner: "p-q-dup-rev"},
	{name: "p-q-dup-rev", target: "/p/1?a=2&a=1", partner: "p-q-dup"},
	{name: "p-q-sorted", target: "/p/1?a=1&b=2", partner: "p-q-unsorted"},
	{name: "p-q-unsorted", target: "/p/1?b=2&a=1", partner: "p-q-sorted"},
	{name: "p-q-semicolon", target: "/p/1?a=1;b=2", partner: "p-q-sorted"},
	{name: "p-q-semicolon-only", target: "/p/1?a=1;a=2", partner: "p-q-dup"},
	{name: "p-q-plus", target: "/p/1?a=1+2", partner: "p-q-pct20"},
	{name: "p-q-pct20", target: "/p/1?a=1%202", partner: "p-q-plus"},
	{name: "p-q-pct2B", target: "/p/1?a=1%2B2", partner: "p-q-plus"},
	{name: "p-q-unicode", target: "/p/1?%C3%A9=%E2%9C%93", partner: "p-q-unicode-raw"},
	{name: "p-q-unicode-raw", target: "/p/1?\xc3\xa9=\xe2\x9c\x93", partner: "p-q-unicode"},
	{name: "p-q-noval", target: "/p/1?a", partner: "p-q-empty"},
	{name: "p-q-empty", target: "/p/1?a=", partner: "p-q-noval"},
	{name: "p-q-amps", target: "/p/1?&a=1&&b=2&", partner: "p-q-sorted"},
	{name: "p-q-bare", target: "/p/1?", partner: "p-base"},
	{name: "p-q-name-pct", target: "/p/1?%61=1", partner: "p-q-a1"},
	{name: "p-q-a1", target: "/p/1?a=1", partner: "p-q-name-pct"},
	{name: "p-q-bad-pct", target: "/p/1?a=%zz&b=2", partner: "p-q-b2"},
	{name: "p-q-b2", target: "/p/1?b=2", partner: "p-q-bad-pct"},
	// forwarding headers
	{name: "p-xfh", target: "/p/1", lines: []string{"X-Forwarded-Host: evil.test"}, partner: "p-base"},
	{name: "p-xfh-lower", target: "/p/1", lines: []string{"x-forwarded-host: evil.test"}, partner: "p-base"},
	{name: "p-xfh-two-lines", target: "/p/1", lines: []string{"X-Forwarded-Host: a.test", "X-Forwarded-Host: b.test"}, partner: "p-xfh-comma"},
	{name: "p-xfh-comma", target: "/p/1", lines: []string{"X-Forwarded-Host: a.test,b.test"}, partner: "p-xfh-two-lines"},
	{name: "p-xfh-empty-then", target: "/p/1", lines: []string{"X-Forwarded-Host:", "X-Forwarded-Host: evil.test"}, partner: "p-base"},
	{name: "p-xfp", target: "/p/1", lines: []string{"X-Forwarded-Proto: https"}, partner: "p-base"},
	{name: "p-xfscheme", target: "/p/1", lines: []string{"X-Forwarded-Scheme: https"}, partner: "p-base"},
	{name: "p-forwarded", target: "/p/1", lines: []string{"Forwarded: for=203.0.113.9;proto=https;host=evil.test"}, partner: "p-base"},
	{name: "p-xff", target: "/p/1", lines: []string{"X-Forwarded-For: 203.0.113.7"}, partner: "p-base"},
	{name: "p-xff-two-lines", target: "/p/1", lines: []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-For: 198.51.100.1"}, partner: "p-base"},
	{name: "p-x-real-ip", target: "/p/1", lines: []string{"X-Real-Ip: 203.0.113.8"}, partner: "p-base"},
	{name: "p-cf-connecting-ip", target: "/p/1", lines: []string{"Cf-Connecting-Ip: 203.0.113.10"}, partner: "p-base"},
	{name: "p-true-client-ip", target: "/p/1", lines: []string{"True-Client-Ip: 203.0.113.11"}, partner: "p-base"},
	{name: "p-fly-client-ip", target: "/p/1", lines: []string{"Fly-Client-Ip: 203.0.113.12"}, partner: "p-base"},
	{name: "p-appengine-addr", target: "/p/1", lines: []string{"X-Appengine-Remote-Addr: 203.0.113.13"}, partner: "p-base"},
	{name: "p-x-forwarded-ssl", target: "/p/1", lines: []string{"X-Forwarded-Ssl: on"}, partner: "p-base"},
	{name: "p-x-url-scheme", target: "/p/1", lines: []string{"X-Url-Scheme: https"}, partner: "p-base"},
	{name: "p-x-forwarded-protocol", target: "/p/1", lines: []string{"X-Forwarded-Protocol: https"}, partner: "p-base"},
	{name: "p-host-other", target: "/p/1", lines: []string{"Host: other.test"}, partner: "p-base"},
	{name: "p-host-port", target: "/p/1", lines: []string{"Host: app.test:8080"}, partner: "p-base"},
	{name: "p-host-upper", target: "/p/1", lines: []string{"HOST: APP.TEST"}, partner: "p-base"},
	// credentials
	{name: "p-auth", target: "/p/1", lines: []string{"Authorization: Bearer alice"}, partner: "p-base"},
	{name: "p-auth-lower", target: "/p/1", lines: []string{"authorization: Bearer alice"}, partner: "p-base"},
	{name: "p-auth-empty", target: "/p/1", lines: []string{"Authorization:"}, partner: "p-base"},
	{name: "p-auth-empty-then-bearer", target: "/p/1", lines: []string{"Authorization:", "Authorization: Bearer mallory"}, partner: "p-base"},
	{name: "p-auth-basic", target: "/p/1", lines: []string{"Authorization: Basic YTpi"}, partner: "p-base"},
	// cookies
	{name: "p-ck-theme", target: "/p/1", lines: []string{"Cookie: theme=dark"}, partner: "p-ck-theme-light"},
	{name: "p-ck-theme-light", target: "/p/1", lines: []string{"Cookie: theme=light"}, partner: "p-ck-theme"},
	{name: "p-ck-ga", target: "/p/1", lines: []string{"Cookie: _ga=GA1.2"}, partner: "p-base"},
	{name: "p-ck-dup", target: "/p/1", lines: []string{"Cookie: theme=dark; theme=light"}, partner: "p-ck-theme-light"},
	{name: "p-ck-two-lines", target: "/p/1", lines: []string{"Cookie: _ga=1", "Cookie: theme=light"}, partner: "p-ck-theme"},
	{name: "p-ck-session", target: "/p/1", lines: []string{"Cookie: session=abc"}, partner: "p-base"},
	{name: "p-ck-lower", target: "/p/1", lines: []string{"cookie: theme=dark"}, partner: "p-ck-theme-light"},
	// conditional requests and ranges
	{name: "p-inm-star", target: "/p/1", lines: []string{"If-None-Match: *"}, partner: "p-base"},
	{name: "p-inm-etag", target: "/p/1", etag: true, partner: "p-base"},
	{name: "p-inm-etag-query", target: "/p/1?a=1", etag: true, partner: "p-q-a1"},
	{name: "p-inm-etag-xfh", target: "/p/1", lines: []string{"X-Forwarded-Host: evil.test"}, etag: true, partner: "p-xfh"},
	{name: "p-inm-lower", target: "/p/1", lines: []string{"if-none-match: *"}, partner: "p-base"},
	{name: "p-ims-future", target: "/p/1", lines: []string{"If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"}, partner: "p-base"},
	{name: "p-ims-past", target: "/p/1", lines: []string{"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"}, partner: "p-base"},
	{name: "p-range", target: "/p/1", lines: []string{"Range: bytes=0-3"}, partner: "p-base"},
	{name: "p-if-range", target: "/p/1", lines: []string{"Range: bytes=0-3", `If-Range: "x"`}, partner: "p-base"},
	{name: "p-if-match", target: "/p/1", lines: []string{`If-Match: "x"`}, partner: "p-base"},
	{name: "p-if-unmodified-since", target: "/p/1", lines: []string{"If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"}, partner: "p-base"},
	// HEAD
	{name: "p-head", method: "HEAD", target: "/p/1", partner: "p-base"},
	{name: "p-head-pct41", method: "HEAD", target: "/p/%41", partner: "p-A"},
	{name: "p-head-xfh", method: "HEAD", target: "/p/1", lines: []string{"X-Forwarded-Host: evil.test"}, partner: "p-base"},
	{name: "p-head-inm-etag", method: "HEAD", target: "/p/1", etag: true, partner: "p-base"},

	// ---- /raw/*rest ----
	{name: "raw-base", target: "/raw/a/b"},
	{name: "raw-pct2F", target: "/raw/a%2Fb", partner: "raw-base"},
	{name: "raw-dslash", target: "/raw//a/b", partner: "raw-base"},
	{name: "raw-dot", target: "/raw/a/../a/b", partner: "raw-base"},
	{name: "raw-A", target: "/raw/A", partner: "raw-pct41"},
	{name: "raw-pct41", target: "/raw/%41", partner: "raw-A"},
	{name: "raw-lt-pct41", target: "/raw/<%41", partner: "raw-pct3CA"},
	{name: "raw-pct3CA", target: "/raw/%3CA", partner: "raw-lt-pct41"},
	{name: "raw-space-pct", target: "/raw/a%20b", partner: "raw-plus"},
	{name: "raw-plus", target: "/raw/a+b", partner: "raw-space-pct"},

	// ---- /auth/:id, an API-key route ----
	{name: "auth-none", target: "/auth/1"},
	{name: "auth-alice", target: "/auth/1", lines: []string{"Authorization: Bearer alice"}, partner: "auth-bob"},
	{name: "auth-bob", target: "/auth/1", lines: []string{"Authorization: Bearer bob"}, partner: "auth-alice"},
	{name: "auth-empty-then-alice", target: "/auth/1", lines: []string{"Authorization:", "Authorization: Bearer alice"}, partner: "auth-empty-then-bob"},
	{name: "auth-empty-then-bob", target: "/auth/1", lines: []string{"Authorization:", "Authorization: Bearer bob"}, partner: "auth-empty-then-alice"},
	{name: "auth-lower-two", target: "/auth/1", lines: []string{"authorization: ", "authorization: Bearer carol"}, partner: "auth-empty-then-bob"},

	// ---- /lang/:id, Key("lang:{id}:{header:Accept-Language}") ----
	{name: "lang-none", target: "/lang/1"},
	{name: "lang-en", target: "/lang/1", lines: []string{"Accept-Language: en"}, partner: "lang-fr"},
	{name: "lang-fr", target: "/lang/1", lines: []string{"Accept-Language: fr"}, partner: "lang-en"},
	{name: "lang-lower", target: "/lang/1", lines: []string{"accept-language: en"}, partner: "lang-fr"},
	{name: "lang-comma", target: "/lang/1", lines: []string{"Accept-Language: en,fr"}, partner: "lang-two-lines"},
	{name: "lang-two-lines", target: "/lang/1", lines: []string{"Accept-Language: en", "Accept-Language: fr"}, partner: "lang-comma"},
	{name: "lang-empty-then", target: "/lang/1", lines: []string{"Accept-Language:", "Accept-Language: en"}, partner: "lang-comma-leading"},
	{name: "lang-comma-leading", target: "/lang/1", lines: []string{"Accept-Language: ,en"}, partner: "lang-empty-then"},
	{name: "lang-id-pct", target: "/lang/%31", partner: "lang-none"},
	// Found by FuzzTransparency (testdata/fuzz/FuzzTransparency/55b0ebb0051882c6):
	// an empty Accept-Language line and none expanded alike.
	{name: "lang-empty", target: "/lang/1", lines: []string{"accept-language:"}, partner: "lang-none"},

	// ---- /vary/:id, VaryHeaders X-Variant ----
	{name: "vary-none", target: "/vary/1"},
	{name: "vary-a", target: "/vary/1", lines: []string{"X-Variant: a"}, partner: "vary-b"},
	{name: "vary-b", target: "/vary/1", lines: []string{"X-Variant: b"}, partner: "vary-a"},
	{name: "vary-lower", target: "/vary/1", lines: []string{"x-variant: a"}, partner: "vary-b"},
	{name: "vary-two-lines", target: "/vary/1", lines: []string{"X-Variant: a", "X-Variant: b"}, partner: "vary-comma"},
	{name: "vary-comma", target: "/vary/1", lines: []string{"X-Variant: a,b"}, partner: "vary-two-lines"},
	{name: "vary-empty", target: "/vary/1", lines: []string{"X-Variant:"}, partner: "vary-none"},

	// ---- responses that must never be stored ----
	{name: "setcookie-1", target: "/setcookie/1", lines: []string{"X-Request-Id: 1"}, partner: "setcookie-2"},
	{name: "setcookie-2", target: "/setcookie/1", lines: []string{"X-Request-Id: 2"}, partner: "setcookie-1"},
	{name: "setcookie-ok-1", target: "/setcookie-ok/1", lines: []string{"X-Request-Id: 1"}, partner: "setcookie-ok-2"},
	{name: "setcookie-ok-2", target: "/setcookie-ok/1", lines: []string{"X-Request-Id: 2"}, partner: "setcookie-ok-1"},
	{name: "private-1", target: "/private/1", lines: []string{"X-Request-Id: 1"}, partner: "private-2"},
	{name: "private-2", target: "/private/1", lines: []string{"X-Request-Id: 2"}, partner: "private-1"},
	{name: "private-ok-1", target: "/private-ok/1", lines: []string{"X-Request-Id: 1"}, partner: "private-ok-2"},
	{name: "private-ok-2", target: "/private-ok/1", lines: []string{"X-Request-Id: 2"}, partner: "private-ok-1"},
}

// unsafeCorpus requests the deliberately unsafe route: its handler reads
// X-Custom, which nothing keys on. The self-check requires the harness to
// report it.
var unsafeCorpus = []reqCase{
	{name: "unsafe-a", target: "/unsafe/1", lines: []string{"X-Custom: a"}, partner: "unsafe-b"},
	{name: "unsafe-b", target: "/unsafe/1", lines: []string{"X-Custom: b"}, partner: "unsafe-a"},
}

// caseByName indexes a corpus.
func caseByName(list []reqCase) map[string]reqCase {
	m := make(map[string]reqCase, len(list))
	for _, c := range list {
		m[c.name] = c
	}
	return m
}
