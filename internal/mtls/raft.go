package mtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds a Raft connection's TLS handshake.
const handshakeTimeout = 10 * time.Second

// NewRaftStreamLayer is Raft's transport over mutual TLS 1.3 on ln,
// advertised to the other nodes as advertise. Accept returns connections
// whose handshake succeeded; a peer that is refused is logged with
// Explain's sentence and closed, and Accept goes on to the next one. The
// handshakes run apart from Accept, so a peer that stalls holds up no
// other for the handshake's timeout.
func NewRaftStreamLayer(ln net.Listener, advertise net.Addr, src *Source, log *slog.Logger) raft.StreamLayer {
	if log == nil {
		log = slog.Default()
	}
	l := &raftLayer{ln: ln, advertise: advertise, src: src, log: newRefusalLog(log),
		server: src.ServerConfig(), accepted: make(chan accepted), closing: make(chan struct{})}
	go l.acceptLoop()
	return l
}

type raftLayer struct {
	ln        net.Listener
	advertise net.Addr
	src       *Source
	log       *refusalLog
	server    *tls.Config

	accepted  chan accepted
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
}

// accepted is a connection for Accept to return, or the listener's error.
type accepted struct {
	conn net.Conn
	err  error
}

func (l *raftLayer) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			l.Close()
			return
		}
		if err != nil {
			// A passing failure, such as too many open files: Raft is told
			// and waits, and so does this loop.
			select {
			case l.accepted <- accepted{err: err}:
			case <-l.closing:
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go l.handshake(c)
	}
}

func (l *raftLayer) handshake(c net.Conn) {
	tc := tls.Server(c, l.server)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		l.log.warn("refused a connection: "+Explain(l.src.annotate(err)), "remote", c.RemoteAddr().String(), "raft")
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	select {
	case l.accepted <- accepted{conn: tc}:
	case <-l.closing:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case a := <-l.accepted:
		return a.conn, a.err
	case <-l.closing:
		return nil, net.ErrClosed
	}
}

// Close closes the listener; Accept then fails.
func (l *raftLayer) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.closing)
		err = l.ln.Close()
	})
	return err
}

func (l *raftLayer) Addr() net.Addr { return l.advertise }

// Dial connects to the node at address, checking its certificate against
// the address's host.
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft address %q: %w", address, err)
	}
	if timeout <= 0 {
		timeout = handshakeTimeout
	}
	cfg := l.src.ClientConfig()
	cfg.ServerName = host
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
	if err != nil {
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
			return nil, err // the node is down: Raft says so itself
		}
		err = l.src.annotate(err)
		l.log.warn("TLS handshake failed: "+Explain(err), "target", string(address), "raft")
		return nil, err
	}
	return c, nil
}
