package mtls

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds a Raft connection's TLS handshake.
const handshakeTimeout = 10 * time.Second

// NewRaftStreamLayer is Raft's transport over mutual TLS 1.3 on ln,
// advertised as advertise. Handshakes run apart from Accept, so a peer that
// stalls or is refused (and logged) holds up no other connection.
func NewRaftStreamLayer(ln net.Listener, advertise net.Addr, src *Source, log *slog.Logger) raft.StreamLayer {
	if log == nil {
		log = slog.Default()
	}
	l := &raftLayer{ln: ln, advertise: advertise, src: src, log: newRefusalLog(log),
		server: src.ServerConfig(), client: src.ClientConfig(),
		conns: make(chan net.Conn), closed: make(chan struct{})}
	go l.acceptLoop()
	return l
}

type raftLayer struct {
	ln             net.Listener
	advertise      net.Addr
	src            *Source
	log            *refusalLog
	server, client *tls.Config

	conns     chan net.Conn
	closed    chan struct{} // closed by acceptLoop when the listener fails or is closed
	acceptErr error         // why, set before closed is closed
}

func (l *raftLayer) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			l.acceptErr = err
			close(l.closed)
			return
		}
		go l.handshake(c)
	}
}

func (l *raftLayer) handshake(c net.Conn) {
	tc := tls.Server(c, l.server)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		l.log.warn("refused a connection: "+Explain(err, l.src.CAFile()), c.RemoteAddr().String(), "raft", "remote")
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	select {
	case l.conns <- tc:
	case <-l.closed:
		tc.Close()
	}
}

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, l.acceptErr
	}
}

// Close closes the listener; acceptLoop then ends and Accept fails.
func (l *raftLayer) Close() error { return l.ln.Close() }

func (l *raftLayer) Addr() net.Addr { return l.advertise }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := l.client.Clone()
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg.ServerName = host
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), cfg)
	if err != nil {
		l.log.warn("TLS handshake failed: "+Explain(err, l.src.CAFile()), string(address), "raft", "target")
		return nil, err
	}
	return c, nil
}
