package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// qcow2 reads the guest's view of a qcow2 image: enough of the format for
// Identify (uncompressed clusters, no backing file, no encryption), which
// is what qemu-img convert writes by default.
type qcow2 struct {
	f           io.ReaderAt
	clusterBits uint32
	size        int64
	l1          []uint64
}

const qcow2OffsetMask = 0x00fffffffffffe00

func openQcow2(f io.ReaderAt) (*qcow2, error) {
	h := make([]byte, 104)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, fmt.Errorf("qcow2 header: %w", err)
	}
	be32 := func(o int) uint32 { return binary.BigEndian.Uint32(h[o:]) }
	be64 := func(o int) uint64 { return binary.BigEndian.Uint64(h[o:]) }
	if string(h[:4]) != "QFI\xfb" {
		return nil, errors.New("not a qcow2 image")
	}
	version := be32(4)
	q := &qcow2{f: f, clusterBits: be32(20), size: int64(be64(24))}
	switch {
	case version != 2 && version != 3:
		return nil, fmt.Errorf("qcow2 version %d", version)
	case be64(8) != 0:
		return nil, errors.New("qcow2 with a backing file: not read")
	case be32(32) != 0:
		return nil, errors.New("encrypted qcow2: not read")
	case q.clusterBits < 9 || q.clusterBits > 21:
		return nil, fmt.Errorf("qcow2 cluster bits %d", q.clusterBits)
	case version == 3 && be64(72)&^1 != 0:
		// Bit 0 (dirty) changes nothing for reading; the others (external
		// data, compression type, extended L2) do.
		return nil, fmt.Errorf("qcow2 incompatible features %#x: not read", be64(72))
	}
	n := be32(36)
	if n > 1<<20 {
		return nil, fmt.Errorf("qcow2 L1 table of %d entries", n)
	}
	raw := make([]byte, 8*int(n))
	if _, err := f.ReadAt(raw, int64(be64(40))); err != nil {
		return nil, fmt.Errorf("qcow2 L1 table: %w", err)
	}
	q.l1 = make([]uint64, n)
	for i := range q.l1 {
		q.l1[i] = binary.BigEndian.Uint64(raw[8*i:])
	}
	return q, nil
}

// ReadAt reads the guest's bytes at off: unallocated and zero clusters
// read as zeros.
func (q *qcow2) ReadAt(p []byte, off int64) (int, error) {
	cs := int64(1) << q.clusterBits
	l2n := cs / 8
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos >= q.size {
			return done, io.EOF
		}
		in := pos % cs
		n := min(int64(len(p)-done), cs-in, q.size-pos)
		chunk := p[done : done+int(n)]
		clear(chunk)
		ci := pos / cs
		if l1i := ci / l2n; l1i < int64(len(q.l1)) {
			if l2off := int64(q.l1[l1i] & qcow2OffsetMask); l2off != 0 {
				var e [8]byte
				if _, err := q.f.ReadAt(e[:], l2off+8*(ci%l2n)); err != nil {
					return done, err
				}
				v := binary.BigEndian.Uint64(e[:])
				switch {
				case v&(1<<62) != 0:
					return done, errors.New("compressed qcow2 cluster: not read")
				case v&1 != 0: // reads as zeros
				case v&qcow2OffsetMask != 0:
					if _, err := q.f.ReadAt(chunk, int64(v&qcow2OffsetMask)+in); err != nil {
						return done, err
					}
				}
			}
		}
		done += int(n)
	}
	return done, nil
}
