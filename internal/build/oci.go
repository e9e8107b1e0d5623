package build

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"

	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
	"vmdeb/internal/oci"
)

// ociStage writes a container image (internal/oci): the root file
// system as one layer, with the image config the output's keys make, in
// an OCI image layout packed in a tar file that podman load and docker
// load read.
type ociStage struct {
	outputStage
	out config.Output
}

func (ociStage) Name() string { return "oci" }

func (s ociStage) Run(ctx context.Context, st *State) error {
	p := st.Plan
	out := p.Spec.Path(s.out.Path)
	tmp, err := st.temp(out)
	if err != nil {
		return err
	}
	created := st.sbomTime()
	// The layer goes first into a file of its own beside the archive
	// (in the build's temporary directory): the archive's entries need
	// its digest and size before its bytes.
	layer, err := os.OpenFile(tmp+".layer", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer layer.Close()
	st.Log.Printf("writing the image's layer (the root file system, gzip-compressed)")
	bw := bufio.NewWriterSize(layer, 1<<20)
	l, err := oci.WriteLayer(ctx, st.Rootfs, bw, oci.LayerOptions{Epoch: p.SourceDateEpoch, Now: created, Add: oci.ContainerFiles})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("the image's layer: %w", err)
	}
	ref := s.out.ImageRef(p.Spec)
	im, err := oci.Describe(oci.Config{
		Ref: ref, Arch: p.Arch.Name, Created: created,
		Cmd: s.out.Cmd, Entrypoint: s.out.Entrypoint, Env: s.out.Env, Labels: s.out.Labels,
		CreatedBy: "vmdeb " + Version,
	}, l)
	if err != nil {
		return err
	}
	if _, err := layer.Seek(0, 0); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	aw := bufio.NewWriterSize(f, 1<<20)
	err = oci.WriteArchive(aw, im, bufio.NewReaderSize(layer, 1<<20), created)
	if err == nil {
		err = aw.Flush()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := errors.Join(layer.Close(), os.Remove(layer.Name())); err != nil {
		return err
	}
	st.Log.Printf("image %s: id %s, manifest %s, layer %s (%s)", oci.FullRef(ref), im.Config.Desc.Digest,
		im.Manifest.Desc.Digest, l.Digest, bytesize.Format(l.Size))
	return st.commit(tmp, out, config.OCI)
}

// ociKernelNote points out a kernel installed for container images only:
// a container runs on its host's kernel, so the package is dead weight.
func ociKernelNote(s *config.Spec) string {
	k := s.KernelPackage()
	if k == "" || !s.HasOutput(config.OCI) {
		return ""
	}
	for _, o := range s.Outputs {
		if o.Type == config.LiveISO || o.Type == config.Disk || o.Type == config.Squashfs || o.Type == config.Ext4 {
			return ""
		}
	}
	return fmt.Sprintf("the image gets the kernel %s, which a container never runs (it runs on its host's kernel): kernel: none leaves it out", k)
}
