package remotecache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"vmdeb/internal/stagecache"
)

// Media types of vmdeb's artifacts.
const (
	StageArtifactType = "application/vnd.vmdeb.stage.v1"
	StageEntryType    = "application/vnd.vmdeb.stage.entry.v1+json" // the config: entry.json
	StageArchiveType  = "application/vnd.vmdeb.stage.rootfs.v1.tar" // the one layer: the tree, a tar archive
	// StageArchiveZstdType is the layer of an entry whose archive is
	// compressed (stagecache.FormatTarZstd, what vmdeb saves).
	StageArchiveZstdType = "application/vnd.vmdeb.stage.rootfs.v1.tar+zstd"
	DebArtifactType      = "application/vnd.vmdeb.deb.v1"
	DebType              = "application/vnd.debian.binary-package"
)

// Limits on what is read whole into memory.
const (
	maxManifest = 4 << 20
	maxEntry    = 4 << 20
)

// ErrMiss says the registry has no artifact under the tag.
var ErrMiss = errors.New("not in the remote cache")

// ErrRefused is an artifact that fails verification.
var ErrRefused = errors.New("refused")

// refusal is an artifact refused, and why: errors.Is(err, ErrRefused).
type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrRefused }

// refuse makes a refusal of what the tag holds.
func refuse(tag, format string, a ...any) error {
	return &refusal{tag + ": " + fmt.Sprintf(format, a...) + " (refused)"}
}

// Client reads and writes one repository. Once the registry has failed to
// answer, the client is down: it tries nothing more, so that a build
// waits for a dead registry once, not per stage and package.
type Client struct {
	Ref    Ref
	target oras.Target
	down   atomic.Pointer[error]
}

// Timeouts for a registry that does not answer: connecting, and waiting
// for the response's header. A body that stalls is bounded by the
// connection's idle timeout.
var (
	DialTimeout   = 5 * time.Second
	HeaderTimeout = 30 * time.Second
)

// New opens the repository r names. Credentials come from where container
// tools keep them (see credentialStore); none are needed for a registry
// that asks for none.
func New(r Ref) (*Client, error) {
	repo, err := remote.NewRepository(r.Reference())
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", Option, r, err)
	}
	repo.PlainHTTP = r.PlainHTTP
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = HeaderTimeout
	tr.Proxy = http.ProxyFromEnvironment
	cl := &auth.Client{
		Client: &http.Client{Transport: tr},
		Header: http.Header{"User-Agent": {"vmdeb"}},
		Cache:  auth.NewCache(),
	}
	if store := credentialStore(); store != nil {
		cl.Credential = credentials.Credential(store)
	}
	repo.Client = cl
	return &Client{Ref: r, target: repo}, nil
}

// NewWithTarget is a client of any oras target (tests: a memory store).
func NewWithTarget(r Ref, t oras.Target) *Client { return &Client{Ref: r, target: t} }

// credentialStore is Docker's config (DOCKER_CONFIG or ~/.docker/
// config.json, with its credential helpers), then the containers tools'
// auth files: REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json
// and ~/.config/containers/auth.json. The first that has an entry for the
// registry wins. Credentials are never logged.
func credentialStore() credentials.Store {
	var stores []credentials.Store
	if s, err := credentials.NewStoreFromDocker(credentials.StoreOptions{}); err == nil {
		stores = append(stores, s)
	}
	var files []string
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		files = append(files, f)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		files = append(files, filepath.Join(d, "containers", "auth.json"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(h, ".config", "containers", "auth.json"))
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		if s, err := credentials.NewStore(f, credentials.StoreOptions{}); err == nil {
			stores = append(stores, s)
		}
	}
	if len(stores) == 0 {
		return nil
	}
	return credentials.NewStoreWithFallbacks(stores[0], stores[1:]...)
}

// Down is why the registry is considered unreachable (nil: it is not).
func (c *Client) Down() error {
	if p := c.down.Load(); p != nil {
		return *p
	}
	return nil
}

// fail marks the client down when err says the registry cannot be
// reached or refuses service (not a missing or corrupt artifact), and
// reports whether this was the first such failure.
func (c *Client) fail(err error) bool {
	if err == nil || errors.Is(err, ErrMiss) || errors.Is(err, ErrRefused) || errors.Is(err, context.Canceled) {
		return false
	}
	return c.down.CompareAndSwap(nil, &err)
}

// guard runs op unless the registry is down; a failure that says it is
// unreachable marks it down. first says this call found it so. op's
// context ends when no data has moved for StallTimeout (see touching).
func (c *Client) guard(ctx context.Context, op func(context.Context) error) (err error, first bool) {
	if d := c.Down(); d != nil {
		return fmt.Errorf("registry unreachable: %w", d), false
	}
	wctx, stop := withWatchdog(ctx)
	err = op(wctx)
	stop()
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(wctx), errStalled) {
		err = fmt.Errorf("%w: no data moved for %s (%v)", errStalled, StallTimeout, err)
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrMiss) && !errors.Is(err, ErrRefused) {
		return err, c.fail(err)
	}
	return err, false
}

// StallTimeout is how long a transfer may move no data before it is
// given up: a registry that accepts a connection and then stalls.
var StallTimeout = 60 * time.Second

var errStalled = errors.New("the registry stalled")

type watchdogKey struct{}

// withWatchdog is ctx, cancelled (cause errStalled) when StallTimeout
// passes without touching(ctx, ...) readers moving data.
func withWatchdog(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(StallTimeout, func() { cancel(errStalled) })
	ctx = context.WithValue(ctx, watchdogKey{}, t)
	return ctx, func() { t.Stop(); cancel(nil) }
}

// touching is r, each read of which resets ctx's watchdog.
func touching(ctx context.Context, r io.Reader) io.Reader {
	t, _ := ctx.Value(watchdogKey{}).(*time.Timer)
	if t == nil {
		return r
	}
	return &touchReader{r, t}
}

type touchReader struct {
	r io.Reader
	t *time.Timer
}

func (r *touchReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(StallTimeout)
	}
	return n, err
}

// resolve finds the manifest under tag; a missing tag is ErrMiss.
func (c *Client) resolve(ctx context.Context, tag string) (ocispec.Descriptor, error) {
	d, err := c.target.Resolve(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return d, ErrMiss
	}
	return d, err
}

// manifest fetches and checks the manifest under tag: an OCI image
// manifest of the artifact type, its digest verified.
func (c *Client) manifest(ctx context.Context, tag, artifactType string) (ocispec.Descriptor, ocispec.Manifest, error) {
	var m ocispec.Manifest
	d, err := c.resolve(ctx, tag)
	if err != nil {
		return d, m, err
	}
	if d.MediaType != ocispec.MediaTypeImageManifest || d.Size > maxManifest {
		return d, m, refuse(tag, "a %s of %d bytes, not a vmdeb artifact", d.MediaType, d.Size)
	}
	data, err := content.FetchAll(ctx, c.target, d)
	if err != nil {
		return d, m, verifyErr(tag, "its manifest", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return d, m, refuse(tag, "its manifest: %v", err)
	}
	if m.ArtifactType != artifactType || len(m.Layers) != 1 {
		return d, m, refuse(tag, "not a %s artifact with one layer", artifactType)
	}
	return d, m, nil
}

// verifyErr makes a verification failure of oras (a digest or size
// mismatch) a refusal, and leaves other errors (the registry) alone.
func verifyErr(tag, what string, err error) error {
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) || errors.Is(err, io.ErrUnexpectedEOF) {
		return refuse(tag, "%s does not match its digest: %v", what, err)
	}
	return err
}

// PullStage fetches the entry with this key of this stage into the local
// cache: ErrMiss when the registry lacks it, an error wrapping ErrRefused
// when what it holds fails verification (nothing is then stored), another
// error when the registry fails. It returns the manifest's digest.
func (c *Client) PullStage(ctx context.Context, key, stage string, local *stagecache.Cache) (dg string, err error) {
	err, _ = c.guard(ctx, func(ctx context.Context) error {
		dg, err = c.pullStage(ctx, key, stage, local)
		return err
	})
	return dg, err
}

func (c *Client) pullStage(ctx context.Context, key, stage string, local *stagecache.Cache) (string, error) {
	tag := StageTag(key)
	d, m, err := c.manifest(ctx, tag, StageArtifactType)
	if err != nil {
		return "", err
	}
	dg := d.Digest.String()
	if lt := m.Layers[0].MediaType; m.Config.MediaType != StageEntryType || m.Config.Size > maxEntry || (lt != StageArchiveZstdType && lt != StageArchiveType) {
		return dg, refuse(tag, "unexpected media types")
	}
	data, err := content.FetchAll(ctx, c.target, m.Config)
	if err != nil {
		return dg, verifyErr(tag, "its entry.json", err)
	}
	e, err := CheckEntry(data, key, stage, m.Layers[0])
	if err != nil {
		return dg, refuse(tag, "%v", err)
	}
	rc, err := c.target.Fetch(ctx, m.Layers[0])
	if err != nil {
		return dg, err
	}
	defer rc.Close()
	// The layer's digest (oras) and the entry's SHA256 (Import) are both
	// checked before the entry takes its name.
	vr := &verifying{vr: content.NewVerifyReader(touching(ctx, rc), m.Layers[0])}
	if err := local.Import(ctx, e, vr); err != nil {
		if vr.failed != nil {
			return dg, refuse(tag, "its archive does not match its digest %s", m.Layers[0].Digest)
		}
		if errors.Is(err, stagecache.ErrCorrupt) {
			return dg, refuse(tag, "%v", err)
		}
		return dg, err
	}
	return dg, nil
}

// archiveTypes are the layer media types of the stage cache's archive
// formats.
var archiveTypes = map[string]string{
	stagecache.FormatTarZstd: StageArchiveZstdType,
	stagecache.FormatTar:     StageArchiveType,
}

// CheckEntry reads a pulled entry.json and checks it against what the
// build computed (key, stage) and the layer that carries its archive:
// one archive of the format the layer's media type says, whose SHA256
// and size are the layer's.
func CheckEntry(data []byte, key, stage string, layer ocispec.Descriptor) (*stagecache.Entry, error) {
	var e stagecache.Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("its entry.json: %v", err)
	}
	switch {
	case e.Key != key:
		return nil, fmt.Errorf("its entry is for key %s, the build computed %s", e.Key, key)
	case e.Stage != stage:
		return nil, fmt.Errorf("its entry is of stage %q, not %q", e.Stage, stage)
	case archiveTypes[e.Format] != layer.MediaType:
		return nil, fmt.Errorf("its entry's format is %q, its layer's media type %s", e.Format, layer.MediaType)
	case layer.Digest != digest.NewDigestFromEncoded(digest.SHA256, e.SHA256):
		return nil, fmt.Errorf("its entry records SHA256 %s, its archive's digest is %s", e.SHA256, layer.Digest)
	case layer.Size != e.Size:
		return nil, fmt.Errorf("its entry records %d bytes, its archive has %d", e.Size, layer.Size)
	}
	return &e, nil
}

// verifying reads through oras's verifier and turns its verdict at the
// end of the stream into a read error, so that the reader's consumer
// never completes on unverified content.
type verifying struct {
	vr     *content.VerifyReader
	failed error
}

func (v *verifying) Read(p []byte) (int, error) {
	n, err := v.vr.Read(p)
	if err == io.EOF {
		if verr := v.vr.Verify(); verr != nil {
			v.failed = verr
			return n, verr
		}
	} else if err != nil && errors.Is(err, content.ErrMismatchedDigest) {
		v.failed = err
	}
	return n, err
}

// PushStage stores a local entry (as Export gives it: an archive at
// path) under its key. It returns the manifest's digest and whether the
// registry had it already (then nothing was sent).
func (c *Client) PushStage(ctx context.Context, e *stagecache.Entry, path string) (dg string, present bool, err error) {
	err, _ = c.guard(ctx, func(ctx context.Context) error {
		dg, present, err = c.pushStage(ctx, e, path)
		return err
	})
	return dg, present, err
}

func (c *Client) pushStage(ctx context.Context, e *stagecache.Entry, path string) (string, bool, error) {
	tag := StageTag(e.Key)
	if d, err := c.resolve(ctx, tag); err == nil {
		return d.Digest.String(), true, nil
	} else if !errors.Is(err, ErrMiss) {
		return "", false, err
	}
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return "", false, err
	}
	cfg := content.NewDescriptorFromBytes(StageEntryType, meta)
	if err := c.pushBytes(ctx, cfg, meta); err != nil {
		return "", false, err
	}
	mt, ok := archiveTypes[e.Format]
	if !ok {
		return "", false, fmt.Errorf("stage entry %s: format %q is not an archive", e.Key[:12], e.Format)
	}
	layer := ocispec.Descriptor{MediaType: mt, Digest: digest.NewDigestFromEncoded(digest.SHA256, e.SHA256), Size: e.Size,
		Annotations: map[string]string{ocispec.AnnotationTitle: stagecache.ArchiveName(e.Format)}}
	if err := c.pushFile(ctx, layer, path); err != nil {
		return "", false, err
	}
	return c.tagManifest(ctx, tag, StageArtifactType, cfg, layer, e.Created, map[string]string{
		"org.vmdeb.stage": e.Stage, "org.vmdeb.config": e.Config, "org.vmdeb.key": e.Key,
	})
}

// tagManifest pushes the artifact's manifest and tags it. Its creation
// date is the content's, so that the same content makes the same
// manifest on every machine.
func (c *Client) tagManifest(ctx context.Context, tag, artifactType string, cfg, layer ocispec.Descriptor, created time.Time, ann map[string]string) (string, bool, error) {
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ocispec.AnnotationCreated] = created.UTC().Format(time.RFC3339)
	d, err := oras.PackManifest(ctx, c.target, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{
		ConfigDescriptor: &cfg, Layers: []ocispec.Descriptor{layer}, ManifestAnnotations: ann,
	})
	if err != nil {
		return "", false, err
	}
	if err := c.target.Tag(ctx, d, tag); err != nil {
		return "", false, err
	}
	return d.Digest.String(), false, nil
}

func (c *Client) pushBytes(ctx context.Context, d ocispec.Descriptor, data []byte) error {
	if ok, err := c.target.Exists(ctx, d); err == nil && ok {
		return nil
	}
	err := c.target.Push(ctx, d, bytes.NewReader(data))
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return nil
	}
	return err
}

// pushFile sends the file at path as the blob d (unless the registry has
// it), checking that the file still is what d says.
func (c *Client) pushFile(ctx context.Context, d ocispec.Descriptor, path string) error {
	if ok, err := c.target.Exists(ctx, d); err == nil && ok {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = c.target.Push(ctx, d, content.NewVerifyReader(touching(ctx, f), d))
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return nil
	}
	return err
}

// PullDeb writes the package whose file has this SHA256 and size to w,
// the registry's digests verified (the caller checks the SHA256 against
// the index as it does for a download). ErrMiss when the registry lacks
// it.
func (c *Client) PullDeb(ctx context.Context, sha string, size int64, w io.Writer) error {
	err, _ := c.guard(ctx, func(ctx context.Context) error {
		tag := DebTag(sha)
		_, m, err := c.manifest(ctx, tag, DebArtifactType)
		if err != nil {
			return err
		}
		l := m.Layers[0]
		if l.MediaType != DebType || l.Digest != digest.NewDigestFromEncoded(digest.SHA256, sha) || l.Size != size {
			return refuse(tag, "its layer is %s, %d bytes, not the package the index names", l.Digest, l.Size)
		}
		rc, err := c.target.Fetch(ctx, l)
		if err != nil {
			return err
		}
		defer rc.Close()
		if _, err := io.Copy(w, &verifying{vr: content.NewVerifyReader(touching(ctx, rc), l)}); err != nil {
			return verifyErr(tag, "the package", err)
		}
		return nil
	})
	return err
}

// PushDeb stores the package file at path (name: its file name; sha and
// size: its verified SHA256 and size) unless the registry has it.
func (c *Client) PushDeb(ctx context.Context, name, sha string, size int64, path string) (pushed bool, err error) {
	err, _ = c.guard(ctx, func(ctx context.Context) error {
		tag := DebTag(sha)
		if _, err := c.resolve(ctx, tag); err == nil {
			return nil
		} else if !errors.Is(err, ErrMiss) {
			return err
		}
		l := ocispec.Descriptor{MediaType: DebType, Digest: digest.NewDigestFromEncoded(digest.SHA256, sha), Size: size,
			Annotations: map[string]string{ocispec.AnnotationTitle: name}}
		if err := c.pushFile(ctx, l, path); err != nil {
			return err
		}
		cfg := ocispec.DescriptorEmptyJSON
		if err := c.pushBytes(ctx, cfg, cfg.Data); err != nil {
			return err
		}
		_, _, err := c.tagManifest(ctx, tag, DebArtifactType, cfg, l, time.Unix(0, 0), nil)
		pushed = err == nil
		return err
	})
	return pushed, err
}

// Queue runs pushes one at a time in the background, so that a build
// does not wait for them between its stages; Wait waits for them all.
type Queue struct {
	jobs chan func()
	wg   sync.WaitGroup
	once sync.Once
}

// Go queues f.
func (q *Queue) Go(f func()) {
	q.once.Do(func() {
		q.jobs = make(chan func(), 4096)
		go func() {
			for j := range q.jobs {
				j()
				q.wg.Done()
			}
		}()
	})
	q.wg.Add(1)
	q.jobs <- f
}

// Wait waits for every queued push.
func (q *Queue) Wait() { q.wg.Wait() }
