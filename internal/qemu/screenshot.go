package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// qmpTimeout bounds one QMP conversation; a screendump takes well under a
// second.
const qmpTimeout = 30 * time.Second

// screendump asks qemu, over its QMP socket, to write the screen to ppm.
func screendump(ctx context.Context, socket, ppm string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("connect to QMP: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.SetDeadline(time.Now().Add(qmpTimeout)); err != nil {
		return err
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	var greeting map[string]json.RawMessage
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("QMP greeting: %w", err)
	}
	if _, err := qmpCall(conn, dec, "qmp_capabilities", nil); err != nil {
		return err
	}
	if _, err := qmpCall(conn, dec, "screendump", map[string]string{"filename": ppm}); err != nil {
		return err
	}
	return nil
}

// qmpCall sends one command and returns its "return" value, skipping the
// asynchronous events that may come first.
func qmpCall(w io.Writer, dec *json.Decoder, cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(w).Encode(req); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := dec.Decode(&resp); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		switch {
		case resp.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
		case resp.Return != nil:
			return resp.Return, nil
		}
	}
}

// ppmToPNG converts qemu's binary PPM (P6) screendump to a PNG file, which
// appears under its name only when complete.
func ppmToPNG(ppm, pngPath string) (err error) {
	f, err := os.Open(ppm)
	if err != nil {
		return err
	}
	defer f.Close()
	img, err := decodePPM(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%s: %w", ppm, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(pngPath), "."+filepath.Base(pngPath)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(tmp.Name()))
		}
	}()
	if err := png.Encode(tmp, img); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", pngPath, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), pngPath)
}

// decodePPM reads a binary PPM (P6) with up to 8 bits per sample.
func decodePPM(r *bufio.Reader) (image.Image, error) {
	var magic string
	var w, h, maxval int
	// Fscan skips the whitespace between fields; qemu writes no comments.
	if _, err := fmt.Fscan(r, &magic, &w, &h, &maxval); err != nil {
		return nil, fmt.Errorf("PPM header: %w", err)
	}
	if magic != "P6" {
		return nil, fmt.Errorf("not a binary PPM (magic %q)", magic)
	}
	if w <= 0 || h <= 0 || w > 1<<14 || h > 1<<14 || maxval <= 0 || maxval > 255 {
		return nil, fmt.Errorf("unsupported PPM: %dx%d, maxval %d", w, h, maxval)
	}
	// Exactly one whitespace byte separates the header from the pixels.
	if _, err := r.ReadByte(); err != nil {
		return nil, fmt.Errorf("PPM header: %w", err)
	}
	pix := make([]byte, w*h*3)
	if _, err := io.ReadFull(r, pix); err != nil {
		return nil, fmt.Errorf("PPM pixels: %w", err)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	scale := func(v byte) uint8 { return uint8(int(v) * 255 / maxval) }
	for y := range h {
		for x := range w {
			i := (y*w + x) * 3
			img.SetRGBA(x, y, color.RGBA{scale(pix[i]), scale(pix[i+1]), scale(pix[i+2]), 255})
		}
	}
	return img, nil
}
