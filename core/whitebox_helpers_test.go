package core

import (
	"io"
	"log/slog"
)

// Helpers of the white-box tests (package core) whose black-box twins
// live in helpers_test.go.

// quietLogger discards what it is given.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
