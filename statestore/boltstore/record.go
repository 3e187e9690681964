package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// recordVersion is the first byte of every stored value.
const recordVersion = 1

// recordHeaderSize is the fixed part of a record: the version byte, the ETag
// sequence and the expiry.
const recordHeaderSize = 1 + 8 + 8

// record is one stored value of the kv bucket. On disk it is
//
//	version (1 byte) | seq (8, big-endian) | expires (8, big-endian Unix ns, 0 = never)
//	| uvarint length of index | index | value
//
// seq is drawn from the store-wide sequence, so it never repeats and is the
// item's ETag. The index is kept so that a delete or the expiry sweeper can
// take the key out of its index without being told which one it is.
type record struct {
	seq     uint64
	expires int64
	index   []byte
	value   []byte
}

// encodeRecord returns the stored form of r in a new slice.
func encodeRecord(r record) []byte {
	b := make([]byte, recordHeaderSize, recordHeaderSize+binary.MaxVarintLen64+len(r.index)+len(r.value))
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:9], r.seq)
	binary.BigEndian.PutUint64(b[9:17], uint64(r.expires))
	b = binary.AppendUvarint(b, uint64(len(r.index)))
	b = append(b, r.index...)
	return append(b, r.value...)
}

var errCorrupt = errors.New("corrupt record")

// decodeRecord parses a stored value. The index and value of the result alias b.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeaderSize {
		return record{}, fmt.Errorf("%w: %d bytes, shorter than the header", errCorrupt, len(b))
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("%w: unknown version %d", errCorrupt, b[0])
	}
	r := record{
		seq:     binary.BigEndian.Uint64(b[1:9]),
		expires: int64(binary.BigEndian.Uint64(b[9:17])),
	}
	if r.seq == 0 {
		return record{}, fmt.Errorf("%w: zero sequence", errCorrupt)
	}
	if r.expires < 0 {
		return record{}, fmt.Errorf("%w: negative expiry", errCorrupt)
	}
	rest := b[recordHeaderSize:]
	n, size := binary.Uvarint(rest)
	if size <= 0 || n > uint64(len(rest)-size) {
		return record{}, fmt.Errorf("%w: bad index length", errCorrupt)
	}
	rest = rest[size:]
	r.index, r.value = rest[:n:n], rest[n:]
	return r, nil
}

// live reports whether r is visible at now (Unix ns).
func (r record) live(now int64) bool { return r.expires == 0 || now < r.expires }

// item returns r as the caller sees it, with its value copied.
func (r record) item(key string) statestore.Item {
	it := statestore.Item{Key: key, Value: append([]byte{}, r.value...), ETag: formatETag(r.seq)}
	if r.expires != 0 {
		it.Expires = time.Unix(0, r.expires)
	}
	return it
}

func formatETag(seq uint64) string { return strconv.FormatUint(seq, 10) }

// expiryKey is the key of the exp bucket entry of key expiring at expires:
// the expiry first, so the bucket sorts by time.
func expiryKey(expires int64, key []byte) []byte {
	k := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(expires))
	return append(k, key...)
}

// splitExpiryKey undoes expiryKey.
func splitExpiryKey(k []byte) (expires int64, key []byte, ok bool) {
	if len(k) <= 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k[:8])), k[8:], true
}
