package grpcapi

import (
	"net/url"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestCodeOf(t *testing.T) {
	for status, want := range map[int]codes.Code{
		200: codes.Unknown, 400: codes.InvalidArgument, 401: codes.Unauthenticated, 403: codes.PermissionDenied,
		404: codes.NotFound, 405: codes.Unimplemented, 408: codes.DeadlineExceeded, 409: codes.Aborted,
		413: codes.ResourceExhausted, 414: codes.InvalidArgument, 417: codes.FailedPrecondition, 431: codes.InvalidArgument,
		500: codes.Internal, 502: codes.Unavailable, 503: codes.Unavailable, 504: codes.DeadlineExceeded, 599: codes.Internal,
	} {
		if got := CodeOf(status); got != want {
			t.Errorf("CodeOf(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestJSONValue(t *testing.T) {
	for in, want := range map[string]string{`{"a":1}`: `{"a":1}`, `hello`: `"hello"`, `3`: `3`, "\xff": `"\ufffd"`} {
		if got := string(jsonValue([]byte(in))); got != want {
			t.Errorf("jsonValue(%q) = %s, want %s", in, got, want)
		}
	}
	if jsonValue(nil) != nil {
		t.Error("jsonValue(nil) is not nil")
	}
}

func TestAppendPathSegmentEscapesAsPathEscape(t *testing.T) {
	segs := []string{"", "a", "Echo", "a/1", "a b", "100%", "é", "a,b;c?d", "x:y@z=w&v+u$t", "-_.~", "\x00\xff"}
	for c := range 256 {
		segs = append(segs, string([]byte{byte(c)}), "a"+string([]byte{byte(c)})+"b")
	}
	for _, seg := range segs {
		if got, want := string(appendPathSegment([]byte("/"), seg)), "/"+url.PathEscape(seg); got != want {
			t.Errorf("appendPathSegment(%q) = %q, want %q", seg, got, want)
		}
	}
}
