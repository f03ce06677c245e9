// Package difftest is routecache's differential transparency suite: the
// same application is served twice, once behind the cache and once
// without it, on Gin, Echo v4, Echo v5 and net/http, and every request of a corpus of
// hostile request forms (path encodings, duplicate and lowercase header
// lines, forwarding headers, credentials, cookies, conditional requests)
// is sent to both over real TCP connections, in random orders and
// concurrently. Apart from the headers the cache adds (X-Cache,
// Cache-Status, Age, ETag, Last-Modified) and Date, both must answer with
// the same status, headers and body. FuzzTransparency checks the same
// property on fuzzed request pairs.
//
// The package holds only tests; it lives under internal/ so that it can
// import core and the adapters.
package difftest
