package core_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/routecache/routecache/core/backend"
)

// `go doc core.RegionConfig` shows the URL form of every registered
// backend scheme, and the near cache option, in the Backend field's
// comment.
func TestRegionConfigDocShowsEveryURLForm(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "cache.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "RegionConfig" {
			return true
		}
		for _, fld := range ts.Type.(*ast.StructType).Fields.List {
			if len(fld.Names) == 1 && fld.Names[0].Name == "Backend" {
				doc = fld.Doc.Text()
			}
		}
		return false
	})
	if doc == "" {
		t.Fatal("RegionConfig.Backend has no doc comment")
	}
	// Schemes registered by this package's own tests are not backends.
	testOnly := map[string]bool{"evflaky://": true}
	want := []string{"near_max_bytes", "near_staleness"}
	for _, s := range backend.Schemes() {
		if !testOnly[s] {
			want = append(want, s)
		}
	}
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("RegionConfig.Backend's comment does not show %q:\n%s", w, doc)
		}
	}
}
