package squashfs

import (
	"bytes"
	"compress/zlib"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compressor ids by mksquashfs's names, for the compressors whose
// metadata this package compresses itself. lz4 and lzo have none here:
// images with them are made by mksquashfs alone.
var compressorIDs = map[string]uint16{"gzip": compGzip, "xz": compXz, "zstd": compZstd}

// Supported tells whether images compressed with comp (mksquashfs's name)
// can be made here.
func Supported(comp string) bool { _, ok := compressorIDs[comp]; return ok }

// metaCompressor compresses metadata blocks for comp, in a form the
// kernel's squashfs reads: xz with a CRC32 check and a dictionary no
// larger than a metadata block; a zstd frame of one segment (its window
// is its size, 8 KiB at most, within what the kernel allocates); zlib.
// The metadata is about one percent of an image, so a Go compressor's
// weaker ratio costs little; the data blocks are mksquashfs's own.
func metaCompressor(comp string) (MetaCompressor, error) {
	switch comp {
	case "xz":
		cfg := xz.WriterConfig{DictCap: metadataSize, CheckSum: xz.CRC32}
		if err := cfg.Verify(); err != nil {
			return nil, err
		}
		return func(raw []byte) ([]byte, error) {
			var b bytes.Buffer
			w, err := cfg.NewWriter(&b)
			if err != nil {
				return nil, err
			}
			if _, err := w.Write(raw); err != nil {
				return nil, err
			}
			if err := w.Close(); err != nil {
				return nil, err
			}
			return b.Bytes(), nil
		}, nil
	case "zstd":
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1),
			zstd.WithSingleSegment(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
		return func(raw []byte) ([]byte, error) { return enc.EncodeAll(raw, nil), nil }, nil
	case "gzip":
		return func(raw []byte) ([]byte, error) {
			var b bytes.Buffer
			w, err := zlib.NewWriterLevel(&b, zlib.BestCompression)
			if err != nil {
				return nil, err
			}
			w.Write(raw)
			if err := w.Close(); err != nil {
				return nil, err
			}
			return b.Bytes(), nil
		}, nil
	}
	return nil, fmt.Errorf("squashfs compressor %q: metadata cannot be compressed here", comp)
}
