package keeper

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// FuzzReadFrame: the keeper's ttrpc frame reader returns a frame of exactly
// the declared length (header included) as it was sent, refuses a length
// over maxFrame having read only the header, and allocates in proportion to
// the bytes that arrive, not to what a hostile header declares.
func FuzzReadFrame(f *testing.F) {
	hdr := func(n uint32, stream uint32, typ byte) []byte {
		b := make([]byte, headerLen)
		binary.BigEndian.PutUint32(b[0:4], n)
		binary.BigEndian.PutUint32(b[4:8], stream)
		b[8] = typ
		return b
	}
	f.Add(append(hdr(3, 1, typeRequest), "abc"...))
	f.Add(append(hdr(0, 2, typeResponse), "next"...))
	f.Add(hdr(maxFrame, 1, typeRequest))                            // hostile: 16 MiB declared, none sent
	f.Add(append(hdr(maxFrame+1, 1, typeRequest), "xx"...))         // over the limit
	f.Add(append(hdr(0xffffffff, 1, typeRequest), "xx"...))         // far over it
	f.Add(append(hdr(1<<20, 3, typeRequest), make([]byte, 100)...)) // a megabyte declared, 100 bytes sent
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fr, err := readFrame(r)
		runtime.ReadMemStats(&after)
		consumed := len(in) - r.Len()
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(4*len(in)+256<<10) {
			t.Fatalf("reading %d bytes allocated %d", len(in), alloc)
		}
		if len(in) < headerLen {
			if err == nil {
				t.Fatalf("a frame out of %d bytes", len(in))
			}
			return
		}
		n := binary.BigEndian.Uint32(in[0:4])
		switch {
		case n > maxFrame:
			if err == nil || consumed != headerLen {
				t.Fatalf("length %d: frame of %d bytes, %v, having read %d bytes", n, len(fr), err, consumed)
			}
		case int(n) > len(in)-headerLen:
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("length %d, %d bytes sent: %v, want a truncated frame", n, len(in)-headerLen, err)
			}
		default:
			if err != nil || !bytes.Equal(fr, in[:headerLen+int(n)]) || consumed != len(fr) {
				t.Fatalf("length %d: got %x, %v (read %d), want %x", n, fr, err, consumed, in[:headerLen+int(n)])
			}
		}
	})
}
