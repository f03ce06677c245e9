package memory_test

import (
	"testing"

	"github.com/routecache/routecache/core/backend"
	"github.com/routecache/routecache/core/backend/backendtest"
	_ "github.com/routecache/routecache/core/backend/memory"
)

func TestContract(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := backend.Open("memory://?max_bytes=1MiB", backend.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return be
	}, backendtest.RefusesEntriesOver(2<<20))
}
