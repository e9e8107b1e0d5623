package squashfs

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// Layout is an uncompressed squashfs image (mksquashfs -noD -noF -noI
// -noX) taken apart: its data and fragment blocks in the order they are
// stored, and its metadata tables as plain byte streams, with the places
// that refer to data or to other metadata noted so they can be moved.
type Layout struct {
	f  *os.File
	sb superblock
	// DataStart is where the data begins (after the superblock and any
	// compressor options).
	dataStart uint64
	// Blocks are the stored data and fragment blocks, by position.
	Blocks []Block

	inodes, dirs, frags, export, ids, xattrKV, xattrIDs *table
	xattrCount                                          uint32
}

// Block is one stored (not sparse) data or fragment block of the layout.
type Block struct {
	Pos  uint64 // in the layout image
	Size uint32 // its bytes, uncompressed
}

// table is a metadata table read into one stream: block i of the table
// holds stream[i*metadataSize:(i+1)*metadataSize].
type table struct {
	stream  []byte
	patches []patch
}

// patch is a field of a metadata stream whose value moves in the final
// image: width bytes at pos, old the layout's value.
type patch struct {
	pos   int
	width int
	kind  patchKind
	old   uint64
	// block, for a block size word, is the data block it describes
	// (an index into Layout.Blocks, or -1 for a sparse block).
	block int
}

type patchKind int

const (
	dataPos      patchKind = iota // a data or fragment block's position
	dataSize                      // a data or fragment block's size word
	dirBlock                      // a directory table block (relative start)
	inodeBlock                    // an inode table block (relative start)
	inodeRef                      // an inode reference (block << 16 | offset)
	xattrKVRef                    // a reference into the xattr key/value table
	xattrKVBlock                  // the key/value table's start (absolute)
)

// layoutBlockStep is how far apart the layout's metadata blocks are: all
// stored uncompressed and full, but for a table's last.
const layoutBlockStep = metadataSize + 2

// ReadLayout takes apart the uncompressed image at path.
func ReadLayout(path string) (*Layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	l, err := readLayout(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// Close releases the layout image.
func (l *Layout) Close() error { return l.f.Close() }

// ReadBlock reads block i's bytes.
func (l *Layout) ReadBlock(i int, buf []byte) ([]byte, error) {
	b := l.Blocks[i]
	if cap(buf) < int(b.Size) {
		buf = make([]byte, l.sb.BlockSize)
	}
	buf = buf[:b.Size]
	_, err := l.f.ReadAt(buf, int64(b.Pos))
	return buf, err
}

// BlockSize is the image's data block size.
func (l *Layout) BlockSize() uint32 { return l.sb.BlockSize }

func readLayout(f *os.File) (*Layout, error) {
	hdr := make([]byte, superSize)
	if n, err := f.ReadAt(hdr, 0); n < superSize {
		return nil, fmt.Errorf("not a squashfs image (%d bytes, shorter than a superblock): %v", n, err)
	}
	sb, err := parseSuperblock(hdr)
	if err != nil {
		return nil, err
	}
	want := uint16(flagNoInodes | flagNoData | flagNoFragments | flagNoXattrs)
	if sb.Flags&want != want || sb.Flags&flagCompOpt != 0 {
		return nil, fmt.Errorf("not an uncompressed layout (flags %#x)", sb.Flags)
	}
	l := &Layout{f: f, sb: sb, dataStart: superSize}
	r := &reader{f: f}

	// The small tables, from their indexes.
	index := func(at uint64, entries uint64, size uint64) ([]uint64, error) {
		n := (entries*size + metadataSize - 1) / metadataSize
		return r.u64s(at, n)
	}
	var idIdx, fragIdx, exportIdx, xattrIdx []uint64
	if idIdx, err = index(sb.IDTable, uint64(sb.IDs), 4); err != nil {
		return nil, fmt.Errorf("id table index: %w", err)
	}
	if sb.Fragments > 0 {
		if fragIdx, err = index(sb.FragTable, uint64(sb.Fragments), 16); err != nil {
			return nil, fmt.Errorf("fragment table index: %w", err)
		}
	}
	if sb.ExportTable != invalidTable {
		if exportIdx, err = index(sb.ExportTable, uint64(sb.Inodes), 8); err != nil {
			return nil, fmt.Errorf("export table index: %w", err)
		}
	}
	var kvStart uint64
	if sb.XattrTable != invalidTable {
		h := make([]byte, 16)
		if _, err := f.ReadAt(h, int64(sb.XattrTable)); err != nil {
			return nil, fmt.Errorf("xattr table: %w", err)
		}
		kvStart, l.xattrCount = le.Uint64(h), le.Uint32(h[8:])
		if xattrIdx, err = index(sb.XattrTable+16, uint64(l.xattrCount), 16); err != nil {
			return nil, fmt.Errorf("xattr id index: %w", err)
		}
	}
	first := func(idx []uint64, or uint64) uint64 {
		if len(idx) > 0 {
			return idx[0]
		}
		return or
	}
	// The tables follow each other: inodes, directories, fragments,
	// exports, ids, xattrs.
	idStart := first(idIdx, sb.IDTable)
	exportStart := first(exportIdx, idStart)
	fragStart := first(fragIdx, exportStart)
	read := func(what string, from, to uint64) (*table, error) {
		s, err := r.metadata(from, to)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return &table{stream: s}, nil
	}
	if l.inodes, err = read("inode table", sb.InodeTable, sb.DirTable); err != nil {
		return nil, err
	}
	if l.dirs, err = read("directory table", sb.DirTable, fragStart); err != nil {
		return nil, err
	}
	l.frags = &table{}
	if sb.Fragments > 0 {
		if l.frags, err = read("fragment table", fragStart, sb.FragTable); err != nil {
			return nil, err
		}
	}
	if sb.ExportTable != invalidTable {
		if l.export, err = read("export table", exportStart, sb.ExportTable); err != nil {
			return nil, err
		}
	}
	if l.ids, err = read("id table", idStart, sb.IDTable); err != nil {
		return nil, err
	}
	if sb.XattrTable != invalidTable {
		if l.xattrKV, err = read("xattr values", kvStart, first(xattrIdx, sb.XattrTable)); err != nil {
			return nil, err
		}
		if l.xattrIDs, err = read("xattr ids", first(xattrIdx, sb.XattrTable), sb.XattrTable); err != nil {
			return nil, err
		}
	}
	if uint64(len(l.frags.stream)) < uint64(sb.Fragments)*16 || (l.export != nil && uint64(len(l.export.stream)) < uint64(sb.Inodes)*8) ||
		uint64(len(l.ids.stream)) < uint64(sb.IDs)*4 || (l.xattrIDs != nil && uint64(len(l.xattrIDs.stream)) < uint64(l.xattrCount)*16) {
		return nil, fmt.Errorf("a table is shorter than the superblock says")
	}

	blocks := map[uint64]Block{}
	addBlock := func(pos uint64, word uint32) (int, error) {
		size := word & dataSizeMask
		if size == 0 {
			return -1, nil
		}
		if word&dataUncompBit == 0 || size > sb.BlockSize {
			return 0, fmt.Errorf("data block at %d: size word %#x is not an uncompressed layout's", pos, word)
		}
		if b, ok := blocks[pos]; ok && b.Size != size {
			return 0, fmt.Errorf("data blocks of sizes %d and %d at %d", b.Size, size, pos)
		}
		blocks[pos] = Block{pos, size}
		return 0, nil
	}
	if err := l.parseInodes(addBlock); err != nil {
		return nil, fmt.Errorf("inode table: %w", err)
	}
	for i := 0; i < int(sb.Fragments); i++ {
		e := l.frags.stream[16*i:]
		pos, word := le.Uint64(e), le.Uint32(e[8:])
		if _, err := addBlock(pos, word); err != nil {
			return nil, fmt.Errorf("fragment %d: %w", i, err)
		}
		l.frags.patches = append(l.frags.patches, patch{pos: 16 * i, width: 8, kind: dataPos, old: pos},
			patch{pos: 16*i + 8, width: 4, kind: dataSize, old: uint64(pos)})
	}
	if err := l.parseDirs(); err != nil {
		return nil, fmt.Errorf("directory table: %w", err)
	}
	if l.export != nil {
		for i := 0; i < int(sb.Inodes); i++ {
			l.export.patches = append(l.export.patches, patch{pos: 8 * i, width: 8, kind: inodeRef, old: le.Uint64(l.export.stream[8*i:])})
		}
	}
	if l.xattrIDs != nil {
		for i := 0; i < int(l.xattrCount); i++ {
			l.xattrIDs.patches = append(l.xattrIDs.patches, patch{pos: 16 * i, width: 8, kind: xattrKVRef, old: le.Uint64(l.xattrIDs.stream[16*i:])})
		}
		if err := l.parseXattrKV(); err != nil {
			return nil, fmt.Errorf("xattr values: %w", err)
		}
	}

	for _, b := range blocks {
		l.Blocks = append(l.Blocks, b)
	}
	sort.Slice(l.Blocks, func(i, j int) bool { return l.Blocks[i].Pos < l.Blocks[j].Pos })
	at := l.dataStart
	for _, b := range l.Blocks {
		if b.Pos != at {
			return nil, fmt.Errorf("data blocks do not follow each other at %d (next at %d)", at, b.Pos)
		}
		at += uint64(b.Size)
	}
	if at != sb.InodeTable {
		return nil, fmt.Errorf("data ends at %d, the inode table starts at %d", at, sb.InodeTable)
	}
	// Size words now point at the blocks by index.
	byPos := make(map[uint64]int, len(l.Blocks))
	for i, b := range l.Blocks {
		byPos[b.Pos] = i
	}
	for _, t := range []*table{l.inodes, l.frags} {
		for i := range t.patches {
			p := &t.patches[i]
			if p.kind == dataSize {
				if p.block >= 0 {
					p.block = byPos[p.old]
				}
				p.old = uint64(le.Uint32(t.stream[p.pos:]))
			}
		}
	}
	return l, nil
}

// parseInodes walks the inode table, noting the fields to move and
// calling block for each data block a file has (its position and size
// word); block returns -1 for a sparse one.
func (l *Layout) parseInodes(block func(pos uint64, word uint32) (int, error)) error {
	s := l.inodes.stream
	bs := uint64(l.sb.BlockSize)
	n := uint32(0)
	for at := 0; at < len(s); n++ {
		if len(s)-at < 16 {
			return fmt.Errorf("inode at %d is cut short", at)
		}
		typ := le.Uint16(s[at:])
		body := at + 16
		need := func(k int) error {
			if body+k > len(s) {
				return fmt.Errorf("inode %d (type %d) at %d is cut short", n, typ, at)
			}
			return nil
		}
		var size int
		switch typ {
		case typeDir:
			size = 16
			if err := need(size); err != nil {
				return err
			}
			l.inodes.patches = append(l.inodes.patches, patch{pos: body, width: 4, kind: dirBlock, old: uint64(le.Uint32(s[body:]))})
		case typeExtDir:
			if err := need(24); err != nil {
				return err
			}
			l.inodes.patches = append(l.inodes.patches, patch{pos: body + 8, width: 4, kind: dirBlock, old: uint64(le.Uint32(s[body+8:]))})
			count := int(le.Uint16(s[body+16:]))
			size = 24
			for i := 0; i < count; i++ {
				if err := need(size + 12); err != nil {
					return err
				}
				e := body + size
				l.inodes.patches = append(l.inodes.patches, patch{pos: e + 4, width: 4, kind: dirBlock, old: uint64(le.Uint32(s[e+4:]))})
				size += 12 + int(le.Uint32(s[e+8:])) + 1
			}
		case typeFile, typeExtFile:
			var start, fsize uint64
			var frag uint32
			var startWidth int
			if typ == typeFile {
				size, startWidth = 16, 4
				if err := need(size); err != nil {
					return err
				}
				start, frag, fsize = uint64(le.Uint32(s[body:])), le.Uint32(s[body+4:]), uint64(le.Uint32(s[body+12:]))
			} else {
				size, startWidth = 40, 8
				if err := need(size); err != nil {
					return err
				}
				start, fsize, frag = le.Uint64(s[body:]), le.Uint64(s[body+8:]), le.Uint32(s[body+28:])
			}
			nblocks := fsize / bs
			if frag == noFragment && fsize%bs != 0 {
				nblocks++
			}
			if err := need(size + 4*int(nblocks)); err != nil {
				return err
			}
			l.inodes.patches = append(l.inodes.patches, patch{pos: body, width: startWidth, kind: dataPos, old: start})
			pos := start
			for i := 0; i < int(nblocks); i++ {
				w := le.Uint32(s[body+size+4*i:])
				idx, err := block(pos, w)
				if err != nil {
					return fmt.Errorf("inode %d: %w", n, err)
				}
				l.inodes.patches = append(l.inodes.patches, patch{pos: body + size + 4*i, width: 4, kind: dataSize, old: pos, block: idx})
				pos += uint64(w & dataSizeMask)
			}
			size += 4 * int(nblocks)
		case typeSymlink, typeExtSymlink:
			if err := need(8); err != nil {
				return err
			}
			size = 8 + int(le.Uint32(s[body+4:]))
			if typ == typeExtSymlink {
				size += 4
			}
		case typeBlockDev, typeCharDev:
			size = 8
		case typeExtBlockDev, typeExtCharDev:
			size = 12
		case typeFifo, typeSocket:
			size = 4
		case typeExtFifo, typeExtSocket:
			size = 8
		default:
			return fmt.Errorf("inode %d at %d has unknown type %d", n, at, typ)
		}
		if err := need(size); err != nil {
			return err
		}
		at = body + size
	}
	if n != l.sb.Inodes {
		return fmt.Errorf("%d inodes, the superblock says %d", n, l.sb.Inodes)
	}
	return nil
}

// parseDirs walks the directory table: runs of a header (count - 1, the
// inode table block of the entries' inodes, a base inode number) and
// entries (offset, inode number delta, type, name size - 1, name).
func (l *Layout) parseDirs() error {
	s := l.dirs.stream
	for at := 0; at < len(s); {
		if len(s)-at < 12 {
			return fmt.Errorf("header at %d is cut short", at)
		}
		count := int(le.Uint32(s[at:])) + 1
		l.dirs.patches = append(l.dirs.patches, patch{pos: at + 4, width: 4, kind: inodeBlock, old: uint64(le.Uint32(s[at+4:]))})
		at += 12
		for i := 0; i < count; i++ {
			if len(s)-at < 8 {
				return fmt.Errorf("entry at %d is cut short", at)
			}
			at += 8 + int(le.Uint16(s[at+6:])) + 1
		}
		if at > len(s) {
			return fmt.Errorf("the last entry runs past the table's end")
		}
	}
	return nil
}

// parseXattrKV walks the xattr key/value stream from each xattr id's
// list: count entries of a key (type, name size, name) and a value (size,
// bytes). A value stored out of line (mksquashfs does so for big and for
// repeated values) is an 8-byte reference to a value record elsewhere in
// the stream, written before the lists; those records hold no reference.
func (l *Layout) parseXattrKV() error {
	s := l.xattrKV.stream
	done := map[int]bool{}
	for id := 0; id < int(l.xattrCount); id++ {
		e := l.xattrIDs.stream[16*id:]
		r, count := ref(le.Uint64(e)), int(le.Uint32(e[8:]))
		if r.block()%layoutBlockStep != 0 {
			return fmt.Errorf("xattr id %d refers to %d, not a metadata block's start", id, r.block())
		}
		at := int(r.block()/layoutBlockStep*metadataSize + r.offset())
		if done[at] {
			continue
		}
		done[at] = true
		for k := 0; k < count; k++ {
			if at < 0 || len(s)-at < 4 {
				return fmt.Errorf("xattr id %d: key at %d is cut short", id, at)
			}
			typ := le.Uint16(s[at:])
			at += 4 + int(le.Uint16(s[at+2:]))
			if len(s)-at < 4 {
				return fmt.Errorf("xattr id %d: value at %d is cut short", id, at)
			}
			vsize := int(le.Uint32(s[at:]))
			if typ&0x100 != 0 {
				if vsize != 8 || len(s)-at < 12 {
					return fmt.Errorf("xattr id %d: out-of-line value at %d is not a reference", id, at)
				}
				l.xattrKV.patches = append(l.xattrKV.patches, patch{pos: at + 4, width: 8, kind: xattrKVRef, old: le.Uint64(s[at+4:])})
			}
			at += 4 + vsize
			if at > len(s) {
				return fmt.Errorf("xattr id %d: a value runs past the table's end", id)
			}
		}
	}
	return nil
}

// reader reads the layout's raw structures.
type reader struct{ f *os.File }

func (r *reader) u64s(at, n uint64) ([]uint64, error) {
	b := make([]byte, 8*n)
	if _, err := r.f.ReadAt(b, int64(at)); err != nil {
		return nil, err
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = le.Uint64(b[8*i:])
	}
	return out, nil
}

// metadata reads the uncompressed metadata blocks in [from, to) into one
// stream; each must be full (8192 bytes) but for the last.
func (r *reader) metadata(from, to uint64) ([]byte, error) {
	if to < from {
		return nil, fmt.Errorf("ends at %d before it starts at %d", to, from)
	}
	raw := make([]byte, to-from)
	if _, err := r.f.ReadAt(raw, int64(from)); err != nil && err != io.EOF {
		return nil, err
	}
	var out []byte
	for at := 0; at < len(raw); {
		if len(raw)-at < 2 {
			return nil, fmt.Errorf("metadata block at %d is cut short", from+uint64(at))
		}
		h := le.Uint16(raw[at:])
		n := int(h &^ mdUncompBit)
		if h&mdUncompBit == 0 {
			return nil, fmt.Errorf("metadata block at %d is compressed: not an uncompressed layout", from+uint64(at))
		}
		if at+2+n > len(raw) || (n != metadataSize && at+2+n != len(raw)) {
			return nil, fmt.Errorf("metadata block at %d of %d bytes does not fit the table", from+uint64(at), n)
		}
		out = append(out, raw[at+2:at+2+n]...)
		at += 2 + n
	}
	return out, nil
}
