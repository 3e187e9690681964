package boltstore

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	cases := []record{
		{seq: 1},
		{seq: 7, expires: 1, value: []byte("v")},
		{seq: 1 << 63, expires: 1<<62 + 5, index: []byte("reminders{T/0ab}"), value: []byte{0, 1, 0xff}},
		{seq: 2, index: bytes.Repeat([]byte("i"), 300), value: bytes.Repeat([]byte{0}, 1000)},
	}
	for _, want := range cases {
		got, err := decodeRecord(encodeRecord(want))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", want, err)
		}
		if got.seq != want.seq || got.expires != want.expires || !bytes.Equal(got.index, want.index) || !bytes.Equal(got.value, want.value) {
			t.Errorf("round trip of %+v gave %+v", want, got)
		}
	}
}

func TestDecodeRecordRejectsDamage(t *testing.T) {
	good := encodeRecord(record{seq: 3, index: []byte("idx"), value: []byte("value")})
	zeroSeq := encodeRecord(record{seq: 3})
	zeroSeq[8] = 0
	negative := encodeRecord(record{seq: 3})
	negative[9] = 0x80
	cases := map[string][]byte{
		"empty":              nil,
		"short header":       good[:recordHeaderSize-1],
		"no index length":    good[:recordHeaderSize],
		"unknown version":    append([]byte{9}, good[1:]...),
		"index past the end": good[:recordHeaderSize+3],
		"zero sequence":      zeroSeq,
		"negative expiry":    negative,
		"overlong varint":    append(append([]byte{}, good[:recordHeaderSize]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
	}
	for name, b := range cases {
		if _, err := decodeRecord(b); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decodeRecord = %v, want errCorrupt", name, err)
		}
	}
}

func TestExpiryKeySortsByTime(t *testing.T) {
	a := expiryKey(100, []byte("zzz"))
	b := expiryKey(200, []byte("aaa"))
	if bytes.Compare(a, b) >= 0 {
		t.Error("an earlier expiry does not sort first")
	}
	expires, key, ok := splitExpiryKey(b)
	if !ok || expires != 200 || string(key) != "aaa" {
		t.Errorf("splitExpiryKey = %d, %q, %v", expires, key, ok)
	}
	if _, _, ok := splitExpiryKey([]byte("short")); ok {
		t.Error("splitExpiryKey accepted a key without room for a stored key")
	}
}

// FuzzDecodeRecord feeds arbitrary bytes, as a damaged file could hold, to
// the decoder: it must not panic, and what it accepts must encode back to
// the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(record{seq: 1, value: []byte("v")}))
	f.Add(encodeRecord(record{seq: 9, expires: 12345, index: []byte("i"), value: []byte{0, 0xff}}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if again := encodeRecord(r); !bytes.Equal(again, b) {
			// Only a non-minimal varint may re-encode differently.
			r2, err := decodeRecord(again)
			if err != nil || r2.seq != r.seq || r2.expires != r.expires || !bytes.Equal(r2.index, r.index) || !bytes.Equal(r2.value, r.value) {
				t.Fatalf("record %x decodes to %+v, which does not survive a round trip", b, r)
			}
		}
	})
}
