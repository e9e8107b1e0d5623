package qemu

import (
	"image/color"
	"os"
	"path/filepath"
	"testing"
)

func TestPPMToPNG(t *testing.T) {
	dir := t.TempDir()
	ppm := filepath.Join(dir, "s.ppm")
	// 2x1: red, blue; qemu's header layout.
	data := append([]byte("P6\n2 1\n255\n"), 255, 0, 0, 0, 0, 255)
	if err := os.WriteFile(ppm, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "s.png")
	if err := ppmToPNG(ppm, out); err != nil {
		t.Fatal(err)
	}
	img := readPNG(t, out)
	if b := img.Bounds(); b.Dx() != 2 || b.Dy() != 1 {
		t.Fatalf("size %v", b)
	}
	if c := color.RGBAModel.Convert(img.At(0, 0)); c != (color.RGBA{255, 0, 0, 255}) {
		t.Errorf("pixel 0: %v", c)
	}
	if c := color.RGBAModel.Convert(img.At(1, 0)); c != (color.RGBA{0, 0, 255, 255}) {
		t.Errorf("pixel 1: %v", c)
	}

	// A truncated dump is an error and leaves no PNG behind.
	if err := os.WriteFile(ppm, data[:len(data)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.png")
	if err := ppmToPNG(ppm, bad); err == nil {
		t.Error("truncated PPM converted")
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "*bad.png*")); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
