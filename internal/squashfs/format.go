// Package squashfs rebuilds a squashfs image from an uncompressed one that
// mksquashfs laid out, reusing compressed data blocks across builds.
//
// mksquashfs does everything a squashfs needs (the walk, excludes, inode
// numbers, hard links, devices, xattrs, sparse blocks, duplicate files,
// times) in a layout pass with nothing compressed (-noD -noF -noI -noX).
// This package reads that image, finds each data and fragment block's
// compressed form in a content-addressed cache (Cache), has mksquashfs
// compress the blocks the cache lacks (one run fed a tar of single
// blocks: a block's compressed bytes depend only on its contents and the
// compressor's options), and writes the final image: the compressed
// blocks where the layout had raw ones, every reference to them moved,
// and the metadata tables compressed in Go. A rebuild in which few files
// changed costs a hash per block, not a compression.
package squashfs

import (
	"encoding/binary"
	"fmt"
)

// The on-disk format, version 4.0 (squashfs-tools' squashfs_fs.h).
const (
	magic         = 0x73717368
	superSize     = 96
	metadataSize  = 8192    // a metadata block's contents at most
	mdUncompBit   = 1 << 15 // in a metadata block's 2-byte header
	dataUncompBit = 1 << 24 // in a data block's size word
	dataSizeMask  = dataUncompBit - 1
	noFragment    = 0xffffffff
	noXattr       = 0xffffffff
	invalidTable  = 0xffffffffffffffff

	// superblock flags
	flagNoInodes    = 1 << 0
	flagNoData      = 1 << 1
	flagNoFragments = 1 << 3
	flagNoXattrs    = 1 << 8
	flagCompOpt     = 1 << 10
	flagNoIDs       = 1 << 11
)

// Compressor ids in the superblock.
const (
	compGzip = 1
	compXz   = 4
	compZstd = 6
)

// inode types
const (
	typeDir = iota + 1
	typeFile
	typeSymlink
	typeBlockDev
	typeCharDev
	typeFifo
	typeSocket
	typeExtDir
	typeExtFile
	typeExtSymlink
	typeExtBlockDev
	typeExtCharDev
	typeExtFifo
	typeExtSocket
)

var le = binary.LittleEndian

// superblock is the 96 bytes at the start of an image.
type superblock struct {
	Inodes      uint32
	MkfsTime    uint32
	BlockSize   uint32
	Fragments   uint32
	Compressor  uint16
	BlockLog    uint16
	Flags       uint16
	IDs         uint16
	Major       uint16
	Minor       uint16
	RootInode   uint64
	BytesUsed   uint64
	IDTable     uint64
	XattrTable  uint64
	InodeTable  uint64
	DirTable    uint64
	FragTable   uint64
	ExportTable uint64
}

func parseSuperblock(b []byte) (superblock, error) {
	var s superblock
	if len(b) < superSize || le.Uint32(b) != magic {
		return s, fmt.Errorf("not a squashfs image (no hsqs magic)")
	}
	s.Inodes, s.MkfsTime, s.BlockSize, s.Fragments = le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:]), le.Uint32(b[16:])
	s.Compressor, s.BlockLog, s.Flags, s.IDs = le.Uint16(b[20:]), le.Uint16(b[22:]), le.Uint16(b[24:]), le.Uint16(b[26:])
	s.Major, s.Minor = le.Uint16(b[28:]), le.Uint16(b[30:])
	u := func(i int) uint64 { return le.Uint64(b[32+8*i:]) }
	s.RootInode, s.BytesUsed, s.IDTable, s.XattrTable = u(0), u(1), u(2), u(3)
	s.InodeTable, s.DirTable, s.FragTable, s.ExportTable = u(4), u(5), u(6), u(7)
	if s.Major != 4 || s.Minor != 0 {
		return s, fmt.Errorf("squashfs version %d.%d: only 4.0 is known", s.Major, s.Minor)
	}
	if s.BlockSize < 4096 || s.BlockSize > 1<<20 || s.BlockSize&(s.BlockSize-1) != 0 {
		return s, fmt.Errorf("squashfs block size %d is not valid", s.BlockSize)
	}
	return s, nil
}

func (s *superblock) bytes() []byte {
	b := make([]byte, superSize)
	le.PutUint32(b, magic)
	le.PutUint32(b[4:], s.Inodes)
	le.PutUint32(b[8:], s.MkfsTime)
	le.PutUint32(b[12:], s.BlockSize)
	le.PutUint32(b[16:], s.Fragments)
	le.PutUint16(b[20:], s.Compressor)
	le.PutUint16(b[22:], s.BlockLog)
	le.PutUint16(b[24:], s.Flags)
	le.PutUint16(b[26:], s.IDs)
	le.PutUint16(b[28:], s.Major)
	le.PutUint16(b[30:], s.Minor)
	for i, v := range []uint64{s.RootInode, s.BytesUsed, s.IDTable, s.XattrTable, s.InodeTable, s.DirTable, s.FragTable, s.ExportTable} {
		le.PutUint64(b[32+8*i:], v)
	}
	return b
}

// ref is a reference into a metadata table: the start of a metadata block
// relative to the table's start, and an offset in its contents.
type ref uint64

func (r ref) block() uint64  { return uint64(r) >> 16 }
func (r ref) offset() uint64 { return uint64(r) & 0xffff }
func mkref(block, offset uint64) ref {
	return ref(block<<16 | offset)
}
