package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --screenshot-after is refused, as bad input, without --screenshot or
// with a negative delay, before anything boots.
func TestBootScreenshotAfterFlags(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--screenshot-after", "5m", img}, "--screenshot-after needs --screenshot FILE"},
		{[]string{"--screenshot", filepath.Join(t.TempDir(), "s.png"), "--screenshot-after", "-1s", img}, "not a delay"},
	} {
		c := bootCmd()
		c.SetOut(io.Discard)
		c.SetErr(io.Discard)
		c.SetArgs(tc.args)
		err := c.Execute()
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want a usage error saying %q", tc.args, err, tc.want)
		}
	}
}
