// Package forward carries an actor call from a silo that does not own the
// actor to the silo that does, over silo-to-silo gRPC: the Client sends the
// HTTP request as it arrived, the Server replays it through the owner's
// gateway handler and returns the HTTP response, or says that the owner no
// longer owns the actor under its newer table.
package forward

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/granaryhq/granary/internal/rawsock"
	silopb "github.com/granaryhq/granary/proto/silo"
)

const (
	// HeaderForwarded marks a request replayed by the Server; its value is
	// the table version the forwarding silo routed by. A request that
	// carries it has been forwarded once and must not be forwarded again.
	HeaderForwarded = "Granary-Forwarded"
	// HeaderNotOwner is set by the handler on a response to a forwarded
	// request for an actor its silo does not own; its value is the table
	// version the silo knows. The Server turns it into
	// ForwardReply.NotOwnerVersion and never passes it on.
	HeaderNotOwner = "Granary-Not-Owner"
)

// MaxBodySize is the largest request or response body a forward carries:
// 16 MiB, four times the gateway's default request limit. A larger request
// body is refused by the Client with ErrTooLarge before anything is sent; a
// larger response body makes the Server answer codes.ResourceExhausted,
// which the Client reports as ErrTooLarge too.
const MaxBodySize = 16 << 20

// maxMessageSize bounds one gRPC message either way: a body of MaxBodySize
// and 1 MiB for the method, URI, headers and protobuf framing, far more than
// the gateway's URI and header limits (12 KiB and 8 KiB) need.
const maxMessageSize = MaxBodySize + 1<<20

var (
	// ErrUnreachable means the owner could not be reached and never saw
	// the call: no connection could be made (refused, unresolvable, backing
	// off after a failure). The caller may retry within its routing window
	// and answer 503 after.
	ErrUnreachable = errors.New("owner silo unreachable")
	// ErrOutcomeUnknown means the connection failed after the call was
	// handed to it (it broke, or Retain or Close closed it): the owner may
	// have run the call. Retrying could run it twice, so the caller must
	// report the failure instead.
	ErrOutcomeUnknown = errors.New("the owner silo failed while the call was under way; it may have run")
	// ErrTooLarge means a request or response body exceeds MaxBodySize.
	ErrTooLarge = errors.New("forwarded body exceeds the size limit")
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("forward client closed")
)

// The HTTP/2 flow-control windows of the connections between silos are
// fixed. Left to itself, grpc-go sizes them by estimating the link's
// bandwidth-delay product: a DATA frame that arrives while no estimate is
// under way makes the receiver send a PING, which the peer answers, until
// the estimate reaches 16 MiB. Between silos on a fast link, with calls
// coming one after another, it never does, so nearly every forward costs
// a PING and its answer on top of its own frames: more writes, reads and
// wake-ups on both silos, in the call's path. Fixed windows turn the
// estimate off. streamWindow is what one forward may send ahead of the
// receiver's reads (a larger body still flows: the receiver widens the
// window of a message it is reading to the message), connWindow what all
// of a connection's forwards may; both are far above what a LAN needs in
// flight, and bound what a peer may send unread, as the estimate's limit
// did.
const (
	streamWindow = 1 << 20
	connWindow   = 8 << 20
)

// serverKeepaliveTimeout is how long the server waits for the answer to a
// keepalive ping, and how long data it sent may stay unacknowledged before
// its connection is dropped (TCP_USER_TIMEOUT): grpc-go's default, which it
// sets on the connections it accepts itself, but which Listener's have to
// be given.
const serverKeepaliveTimeout = 20 * time.Second

// Listener returns ln, for the gRPC server that registers a Server: its
// connections read and write with raw system calls (internal/rawsock),
// so that the scheduler does not hand their threads' processors around
// (see there), and carry the TCP user timeout that grpc-go would set.
func Listener(ln net.Listener) net.Listener { return rawsock.Listener(ln, serverKeepaliveTimeout) }

// dial connects to a peer silo for the Client as grpc-go would, with raw
// reads and writes, and the TCP user timeout that grpc-go sets from the
// keepalive timeout on the connections it dials itself.
func dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := rawsock.SetUserTimeout(c, keepaliveTimeout); err != nil {
		c.Close()
		return nil, err
	}
	return rawsock.Wrap(c), nil
}

// ServerOptions are the options the gRPC server that registers a Server
// needs: message limits that fit MaxBodySize, a keepalive policy that
// allows the Client's pings, reused stream goroutines, and fixed flow
// control windows (see streamWindow).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize),
		// Calls run on goroutines that are kept, with their grown stacks,
		// rather than on a new goroutine each (about 8% of a small call).
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.KeepaliveParams(keepalive.ServerParameters{Timeout: serverKeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveTime / 2,
			PermitWithoutStream: true,
		}),
	}
}

// connectionFields are the fields that describe one HTTP connection, not the
// message, and the ones the transport recomputes (Content-Length is the
// body's length). They are never forwarded in either direction.
var connectionFields = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length",
}

// responseOnlyFields are dropped from responses as well: the gateway that
// answers the client writes its own.
var responseOnlyFields = []string{"Date", "Server"}

// fieldFilter decides which header fields of one message are forwarded.
type fieldFilter struct {
	response bool
	// named holds the fields the message's Connection headers list.
	named [][]byte
}

// addConnection records the fields one Connection header value names.
func (f *fieldFilter) addConnection(value []byte) {
	for token := range bytes.SplitSeq(value, []byte{','}) {
		if token = bytes.TrimSpace(token); len(token) > 0 {
			f.named = append(f.named, token)
		}
	}
}

// drops reports whether f keeps the field called name from being forwarded.
func drops[T ~string | ~[]byte](f *fieldFilter, name T) bool {
	if oneOf(name, connectionFields) || equalFold(name, HeaderForwarded) ||
		f.response && (oneOf(name, responseOnlyFields) || equalFold(name, HeaderNotOwner)) {
		return true
	}
	for _, n := range f.named {
		if equalFold(name, n) {
			return true
		}
	}
	return false
}

func oneOf[T ~string | ~[]byte](name T, fields []string) bool {
	for _, f := range fields {
		if equalFold(name, f) {
			return true
		}
	}
	return false
}

// equalFold compares header field names, which are ASCII tokens, ignoring
// case.
func equalFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// headerSize is the first pass over a message's forwarded fields: it sizes
// the buffers of a headerList.
type headerSize struct{ fields, names, values int }

func (s *headerSize) count(name, value []byte) {
	s.fields++
	s.names += len(name)
	s.values += len(value)
}

// headerList builds the protobuf header list of one message with a fixed
// number of allocations: the names share one string, the values one slice.
type headerList struct {
	names   []byte
	ends    []int // where each field's name ends in names
	values  []byte
	headers []silopb.Header
}

func newHeaderList(size headerSize) *headerList {
	return &headerList{
		names:   make([]byte, 0, size.names),
		ends:    make([]int, 0, size.fields),
		values:  make([]byte, 0, size.values),
		headers: make([]silopb.Header, size.fields),
	}
}

// add appends a field; it must be one the headerSize counted.
func (l *headerList) add(name, value []byte) {
	l.names = append(l.names, name...)
	i := len(l.ends)
	l.ends = append(l.ends, len(l.names))
	start := len(l.values)
	l.values = append(l.values, value...)
	l.headers[i].Value = l.values[start:len(l.values):len(l.values)]
}

// list returns the fields in the order they were added.
func (l *headerList) list() []*silopb.Header {
	if len(l.ends) == 0 {
		return nil
	}
	names := string(l.names)
	out := make([]*silopb.Header, len(l.ends))
	start := 0
	for i, end := range l.ends {
		l.headers[i].Name = names[start:end]
		out[i] = &l.headers[i]
		start = end
	}
	return out
}
