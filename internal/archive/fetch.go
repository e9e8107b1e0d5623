package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"vmdeb/internal/aptauth"
)

// Client fetches files from a mirror (http, https or file URLs). Every
// request has a deadline, a transfer that stalls is cut, and transient
// failures (network errors, 5xx, a body cut short) are retried.
type Client struct {
	HTTP *http.Client
	// Timeout bounds one request, body included (one attempt).
	Timeout time.Duration
	// Stall cuts a transfer that receives less than MinSpeed bytes a
	// second over this long (nothing at all, or a mirror that trickles a
	// byte every few seconds).
	Stall time.Duration
	// MinSpeed is the slowest transfer (bytes a second, averaged over
	// Stall) that is not cut; 0 cuts only a transfer that receives nothing.
	MinSpeed int64
	// Retries is how many times a failed request is tried again.
	Retries int
	// Backoff is the pause before the first retry; it doubles each time.
	Backoff time.Duration
	// Auth holds the mirrors' credentials, sent as HTTP basic
	// authentication to the URLs they match (apt's rules).
	Auth aptauth.Set
}

// transport is every NewClient's: one pool of connections to the
// mirrors for all of a process's downloads.
var transport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 20 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   20 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	MaxIdleConnsPerHost:   16,
	IdleConnTimeout:       60 * time.Second,
	// Packages are already compressed; asking for gzip only costs CPU.
	DisableCompression: true,
}

// NewClient returns a Client with the defaults vmdeb uses: generous enough
// for a large package on a slow mirror, short enough that a dead mirror
// fails the build in minutes, not hours. Every download vmdeb makes goes
// through such a client (the bootstrap's packages, the preflight's
// Release, debian-installer's files).
func NewClient() *Client {
	return &Client{HTTP: &http.Client{Transport: transport}, Timeout: 5 * time.Minute, Stall: 30 * time.Second, MinSpeed: DefaultMinSpeed, Retries: 3, Backoff: 500 * time.Millisecond}
}

// DefaultMinSpeed is the low-speed limit of NewClient: 1 KiB/s over the
// stall window. A package of a few MiB then still has minutes.
const DefaultMinSpeed = 1 << 10

// StallError is a transfer cut because it received (almost) nothing.
type StallError struct {
	URL      string
	Stall    time.Duration
	Got      int64 // bytes in the last window
	MinSpeed int64
}

func (e *StallError) Error() string {
	if e.Got == 0 {
		return fmt.Sprintf("%s: no data for %s", e.URL, e.Stall)
	}
	return fmt.Sprintf("%s: %d bytes in %s, slower than %d bytes/s: the mirror trickles", e.URL, e.Got, e.Stall, e.MinSpeed)
}

// StatusError is an HTTP answer other than 200.
type StatusError struct {
	URL    string
	Status string
	Code   int
}

func (e *StatusError) Error() string { return e.URL + ": " + e.Status }

// NotFound reports whether err says the file is not on the mirror.
func NotFound(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code == http.StatusNotFound || se.Code == http.StatusGone
	}
	return errors.Is(err, os.ErrNotExist)
}

// Fetch gets u and hands its body to fn. When the transfer fails in a way
// worth retrying, fn is called again with a fresh body, so fn must start
// over each time (truncate what it wrote). An error fn returns that is not
// a read error of the body is final.
func (c *Client) Fetch(ctx context.Context, u string, fn func(io.Reader) error) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	if pu.Scheme == "file" {
		f, err := os.Open(pu.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		return fn(f)
	}
	if pu.Scheme != "http" && pu.Scheme != "https" {
		return fmt.Errorf("%s: unsupported URL scheme %q (http, https, file)", u, pu.Scheme)
	}
	wait := c.Backoff
	for attempt := 0; ; attempt++ {
		err = c.once(ctx, u, fn)
		if err == nil || !retryable(err) || attempt >= c.Retries || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait *= 2
	}
}

// transient marks an error worth another attempt.
type transient struct{ err error }

func (t *transient) Error() string { return t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

func retryable(err error) bool {
	var t *transient
	return errors.As(err, &t)
}

func (c *Client) once(ctx context.Context, u string, fn func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "vmdeb")
	if e := c.Auth.Lookup(u); e != nil {
		req.SetBasicAuth(e.Login, e.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &transient{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		se := &StatusError{URL: u, Status: resp.Status, Code: resp.StatusCode}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return &transient{se}
		}
		return se
	}
	body := &watchedBody{r: resp.Body, cancel: cancel, stall: c.Stall, minSpeed: c.MinSpeed}
	stop := body.watch()
	defer stop()
	err = fn(body)
	if body.err != nil {
		if body.stalled.Load() {
			return &transient{&StallError{URL: u, Stall: c.Stall, Got: body.windowGot.Load(), MinSpeed: c.MinSpeed}}
		}
		return &transient{fmt.Errorf("%s: %w", u, body.err)}
	}
	if err == nil && resp.ContentLength >= 0 && body.n != resp.ContentLength {
		return &transient{fmt.Errorf("%s: got %d of %d bytes", u, body.n, resp.ContentLength)}
	}
	return err
}

// watchedBody records read errors (so Fetch can tell them from fn's own)
// and cancels the request when fewer than minSpeed bytes a second (at
// least one byte) arrive over a window of stall.
type watchedBody struct {
	r         io.Reader
	n         int64
	err       error
	cancel    context.CancelFunc
	stall     time.Duration
	minSpeed  int64
	got       atomic.Int64 // bytes read so far (for the watcher)
	windowGot atomic.Int64 // bytes in the window that was cut
	stalled   atomic.Bool
}

func (b *watchedBody) watch() func() {
	if b.stall <= 0 {
		return func() {}
	}
	need := max(1, b.minSpeed*int64(b.stall)/int64(time.Second))
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(b.stall)
		defer t.Stop()
		last := int64(0)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				now := b.got.Load()
				if now-last < need {
					b.windowGot.Store(now - last)
					b.stalled.Store(true)
					b.cancel()
					return
				}
				last = now
			}
		}
	}()
	return func() { close(done) }
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	b.got.Add(int64(n))
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Get fetches a small file (an index) into memory, at most limit bytes.
func (c *Client) Get(ctx context.Context, u string, limit int64) ([]byte, error) {
	var data []byte
	err := c.Fetch(ctx, u, func(r io.Reader) error {
		var err error
		data, err = io.ReadAll(io.LimitReader(r, limit+1))
		if err == nil && int64(len(data)) > limit {
			return fmt.Errorf("%s: larger than %d bytes", u, limit)
		}
		return err
	})
	return data, err
}

// Download fetches u into the file dst and checks it against want: its
// SHA256, and its size unless want.Size is negative (a SHA256SUMS list
// gives none). The file is written as dst+".part" and takes its name only
// once verified; a file that does not match is removed and gives a
// *HashError naming it as name (the archive's name for it).
func (c *Client) Download(ctx context.Context, u, dst, name string, want FileInfo) error {
	part := dst + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = c.DownloadTo(ctx, u, f, name, want)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, dst)
	}
	if err != nil {
		os.Remove(part)
	}
	return err
}

// DownloadTo fetches u into f (an empty file open for writing, truncated
// again if the transfer is retried) and checks what it wrote against want
// as Download does. The caller closes f and gives it its final name, or
// removes it on error.
func (c *Client) DownloadTo(ctx context.Context, u string, f *os.File, name string, want FileInfo) error {
	if !IsSHA256(want.SHA256) {
		return fmt.Errorf("%s: no SHA256 to check it against", name)
	}
	hw := &hashWriter{f: f, h: sha256.New()}
	err := c.Fetch(ctx, u, func(r io.Reader) error {
		if err := hw.reset(); err != nil {
			return err
		}
		if want.Size >= 0 {
			r = io.LimitReader(r, want.Size+1)
		}
		_, err := io.Copy(hw, r)
		return err
	})
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(hw.h.Sum(nil)); got != want.SHA256 || want.Size >= 0 && hw.n != want.Size {
		return &HashError{File: name, Want: want.SHA256, Got: got, WantSize: want.Size, GotSize: hw.n, Downloaded: true}
	}
	return nil
}

// joinURL appends path elements to a mirror URL.
func joinURL(base string, elem ...string) string {
	return strings.TrimRight(base, "/") + "/" + strings.Join(elem, "/")
}
