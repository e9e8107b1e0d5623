package squashfs

import (
	"bufio"
	"fmt"
	"os"
)

// Stored is a data or fragment block as the final image stores it.
type Stored struct {
	Data         []byte
	Uncompressed bool // Data is the block's own bytes (compressing did not shrink it)
}

// Header is what the final image says of its compressor: its id in the
// superblock and, when not the defaults, its options block (stored as
// mksquashfs writes it after the superblock, header included).
type Header struct {
	Compressor uint16
	Options    []byte
}

// MetaCompressor compresses a metadata block's contents; the image keeps
// them uncompressed when the result is not smaller.
type MetaCompressor func(raw []byte) ([]byte, error)

// Write writes the final image to f: the layout with each data and
// fragment block i replaced by data(i), in the same order, every
// reference to data and to metadata moved to match, and the metadata
// tables compressed with mc. Blocks are asked for in order, once each.
func (l *Layout) Write(f *os.File, h Header, data func(i int) (Stored, error), mc MetaCompressor) error {
	w := &posWriter{w: bufio.NewWriterSize(f, 1<<20)}
	w.write(make([]byte, superSize))
	w.write(h.Options)
	newStart := w.pos
	blockPos := make([]uint64, len(l.Blocks))
	blockWord := make([]uint32, len(l.Blocks))
	moved := make(map[uint64]uint64, len(l.Blocks)+2)
	moved[0] = 0 // a file without data blocks starts at 0
	moved[l.dataStart] = newStart
	for i, b := range l.Blocks {
		s, err := data(i)
		if err != nil {
			return err
		}
		if len(s.Data) == 0 || len(s.Data) > int(l.sb.BlockSize) || (s.Uncompressed && len(s.Data) != int(b.Size)) {
			return fmt.Errorf("data block %d: %d bytes stored for %d", i, len(s.Data), b.Size)
		}
		blockPos[i], moved[b.Pos] = w.pos, w.pos
		blockWord[i] = uint32(len(s.Data))
		if s.Uncompressed {
			blockWord[i] |= dataUncompBit
		}
		w.write(s.Data)
	}
	moved[l.sb.InodeTable] = w.pos
	if w.err != nil {
		return w.err
	}

	inodes, dirs := newOutTable(l.inodes, mc), newOutTable(l.dirs, mc)
	frags := newOutTable(l.frags, mc)
	var export, ids, kv, xids *outTable
	ids = newOutTable(l.ids, mc)
	if l.export != nil {
		export = newOutTable(l.export, mc)
	}
	if l.xattrKV != nil {
		kv, xids = newOutTable(l.xattrKV, mc), newOutTable(l.xattrIDs, mc)
	}
	blockOf := func(t *outTable, old uint64) (uint64, error) {
		if old%layoutBlockStep != 0 {
			return 0, fmt.Errorf("a reference to %d is not at a metadata block's start", old)
		}
		return t.blockStart(int(old / layoutBlockStep))
	}
	resolve := func(p patch) (uint64, error) {
		switch p.kind {
		case dataPos:
			if n, ok := moved[p.old]; ok {
				return n, nil
			}
			return 0, fmt.Errorf("data at %d is not where a block starts", p.old)
		case dataSize:
			if p.block < 0 {
				return p.old, nil
			}
			return uint64(blockWord[p.block]), nil
		case dirBlock:
			return blockOf(dirs, p.old)
		case inodeBlock:
			return blockOf(inodes, p.old)
		case inodeRef:
			b, err := blockOf(inodes, ref(p.old).block())
			return uint64(mkref(b, ref(p.old).offset())), err
		case xattrKVRef:
			b, err := blockOf(kv, ref(p.old).block())
			return uint64(mkref(b, ref(p.old).offset())), err
		}
		return 0, fmt.Errorf("unknown reference kind %d", p.kind)
	}
	all := []*outTable{inodes, dirs, frags, export, ids, kv, xids}
	for _, t := range all {
		if t != nil {
			t.resolve = resolve
		}
	}
	for _, t := range all {
		if t == nil {
			continue
		}
		if _, err := t.blockStart(t.blocks()); err != nil {
			return err
		}
	}
	root, err := resolve(patch{kind: inodeRef, old: l.sb.RootInode})
	if err != nil {
		return fmt.Errorf("root inode: %w", err)
	}

	sb := l.sb
	sb.Compressor = h.Compressor
	sb.Flags &^= flagNoInodes | flagNoData | flagNoFragments | flagNoXattrs | flagCompOpt
	if len(h.Options) > 0 {
		sb.Flags |= flagCompOpt
	}
	sb.RootInode = root
	sb.InodeTable = inodes.write(w)
	sb.DirTable = dirs.write(w)
	// A table that lists its metadata blocks: the blocks, then the list.
	withIndex := func(t *outTable) uint64 {
		start := t.write(w)
		at := w.pos
		b := make([]byte, 8)
		for i := 0; i < t.blocks(); i++ {
			le.PutUint64(b, start+t.start[i])
			w.write(b)
		}
		return at
	}
	sb.FragTable = withIndex(frags)
	sb.ExportTable = invalidTable
	if export != nil {
		sb.ExportTable = withIndex(export)
	}
	sb.IDTable = withIndex(ids)
	sb.XattrTable = invalidTable
	if kv != nil {
		kvStart := kv.write(w)
		xstart := xids.write(w)
		sb.XattrTable = w.pos
		b := make([]byte, 16)
		le.PutUint64(b, kvStart)
		le.PutUint32(b[8:], l.xattrCount)
		w.write(b)
		for i := 0; i < xids.blocks(); i++ {
			le.PutUint64(b, xstart+xids.start[i])
			w.write(b[:8])
		}
	}
	sb.BytesUsed = w.pos
	if pad := (4096 - w.pos%4096) % 4096; pad > 0 {
		w.write(make([]byte, pad))
	}
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err != nil {
		return w.err
	}
	_, err = f.WriteAt(sb.bytes(), 0)
	return err
}

// outTable is a metadata table of the final image, compressed block by
// block when first needed: a block's contents can depend on where blocks
// of other tables start (an inode names its directory's block, a
// directory its entries' inode block), and where a block starts depends
// only on the blocks before it, so asking for starts in any order works.
type outTable struct {
	stream  []byte
	byBlock [][]patch // the patches that touch each block
	mc      MetaCompressor
	resolve func(patch) (uint64, error)
	stored  [][]byte // each block as stored, header included
	start   []uint64 // where each block starts, relative to the table; len = blocks done + 1
	busy    []bool
}

func newOutTable(t *table, mc MetaCompressor) *outTable {
	o := &outTable{stream: append([]byte(nil), t.stream...), mc: mc, start: []uint64{0}}
	n := o.blocks()
	o.byBlock, o.stored, o.busy = make([][]patch, n), make([][]byte, n), make([]bool, n)
	for _, p := range t.patches {
		first, last := p.pos/metadataSize, (p.pos+p.width-1)/metadataSize
		for b := first; b <= last && b < n; b++ {
			o.byBlock[b] = append(o.byBlock[b], p)
		}
	}
	return o
}

func (o *outTable) blocks() int { return (len(o.stream) + metadataSize - 1) / metadataSize }

// blockStart is where block i starts in the final table (i == blocks():
// the table's size), compressing the blocks before it.
func (o *outTable) blockStart(i int) (uint64, error) {
	if i > o.blocks() {
		return 0, fmt.Errorf("a reference to metadata block %d of a table of %d", i, o.blocks())
	}
	for len(o.start) <= i {
		b := len(o.start) - 1
		if o.busy[b] {
			return 0, fmt.Errorf("metadata block %d refers to itself through another table", b)
		}
		o.busy[b] = true
		s, err := o.compress(b)
		if err != nil {
			return 0, err
		}
		if len(o.start) > b+1 {
			// Finished through a reference to a later block.
			continue
		}
		o.stored[b] = s
		o.start = append(o.start, o.start[b]+uint64(len(s)))
	}
	return o.start[i], nil
}

func (o *outTable) compress(b int) ([]byte, error) {
	for _, p := range o.byBlock[b] {
		v, err := o.resolve(p)
		if err != nil {
			return nil, err
		}
		switch p.width {
		case 4:
			if v > 0xffffffff {
				return nil, fmt.Errorf("%d does not fit a 32-bit field", v)
			}
			le.PutUint32(o.stream[p.pos:], uint32(v))
		case 8:
			le.PutUint64(o.stream[p.pos:], v)
		}
	}
	raw := o.stream[b*metadataSize : min((b+1)*metadataSize, len(o.stream))]
	c, err := o.mc(raw)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 2, 2+len(raw))
	if len(c) > 0 && len(c) < len(raw) {
		le.PutUint16(out, uint16(len(c)))
		return append(out, c...), nil
	}
	le.PutUint16(out, uint16(len(raw))|mdUncompBit)
	return append(out, raw...), nil
}

// write writes the table's blocks and returns where it starts.
func (o *outTable) write(w *posWriter) uint64 {
	at := w.pos
	for _, s := range o.stored {
		w.write(s)
	}
	return at
}

// posWriter writes sequentially and counts; the first error sticks.
type posWriter struct {
	w   *bufio.Writer
	pos uint64
	err error
}

func (p *posWriter) write(b []byte) {
	if p.err != nil {
		return
	}
	n, err := p.w.Write(b)
	p.pos += uint64(n)
	p.err = err
}
