package gateway

// Request paths and names.

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/granaryhq/granary/actor"
)

func validName(what, s string) *apiError {
	if err := actor.ValidateName(s); err != nil {
		return badRequest(fmt.Sprintf("%s %q %v", what, s, err))
	}
	return nil
}

// splitPath splits a raw request path into percent-decoded segments.
func splitPath(p []byte) ([]string, *apiError) {
	if len(p) == 0 || p[0] != '/' {
		return nil, malformed("request path must start with /")
	}
	// One string for the whole path; segments are slices of it.
	rest := string(p[1:])
	segs := make([]string, 0, 8)
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if strings.IndexByte(seg, '%') >= 0 {
			dec, err := url.PathUnescape(seg)
			if err != nil {
				return nil, badRequest(fmt.Sprintf("request path segment %q is not valid percent-encoding", seg))
			}
			seg = dec
		}
		segs = append(segs, seg)
		if !more {
			return segs, nil
		}
		rest = tail
	}
}

func joinPath(segs []string) string {
	n := len(segs) - 1
	for _, s := range segs {
		n += len(s)
	}
	b := make([]byte, 0, n)
	for i, s := range segs {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, s...)
	}
	return string(b)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
