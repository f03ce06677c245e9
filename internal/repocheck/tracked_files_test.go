package repocheck

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxTrackedBytes bounds a tracked file: the largest sources and docs are
// a few dozen KiB, a compiled binary tens of MiB.
const maxTrackedBytes = 1 << 20

// gitRoot returns the work tree's top directory, or skips the test when
// the module is not a git checkout (a copy in a module cache).
func gitRoot(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// executableMagic are the first bytes of the executable formats Go builds.
var executableMagic = [][]byte{
	[]byte("\x7fELF"),        // Linux and the BSDs
	[]byte("MZ"),             // Windows
	{0xcf, 0xfa, 0xed, 0xfe}, // macOS, 64-bit
	{0xca, 0xfe, 0xba, 0xbe}, // macOS, universal
}

// No compiled binary (the 44 MB examples/demo/demo once was) and no file
// over 1 MiB is tracked.
func TestNoBuildOutputsTracked(t *testing.T) {
	root := gitRoot(t)
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("routecache: git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		path := filepath.Join(root, name)
		fi, err := os.Lstat(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxTrackedBytes {
			t.Errorf("%s is tracked and holds %d bytes (more than %d): a build output?", name, fi.Size(), maxTrackedBytes)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		n, _ := f.Read(head)
		f.Close()
		for _, m := range executableMagic {
			if bytes.HasPrefix(head[:n], m) {
				t.Errorf("%s is tracked and is a compiled executable", name)
			}
		}
	}
}

// `go build` in an example's directory names the binary after the
// directory: git ignores it, so it cannot be committed by accident.
func TestExampleBinariesIgnored(t *testing.T) {
	root := gitRoot(t)
	dirs, err := os.ReadDir(filepath.Join(root, "examples"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		bin := "examples/" + d.Name() + "/" + d.Name()
		cmd := exec.Command("git", "check-ignore", "-q", "--no-index", bin)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			t.Errorf("%s, what `go build` writes in examples/%s, is not ignored (git check-ignore: %v)", bin, d.Name(), err)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("routecache: no example directory found")
	}
}
