// Package httpheader decides which header fields Granary passes on when it
// relays a message between a client and an app: a field passes when its name
// is a token (RFC 9110 §5.1) and it is not hop-by-hop (§7.6.1), that is,
// neither one of a fixed set nor named by the message's own Connection
// fields. The checks allocate nothing unless a message carries more than a
// few Connection fields.
package httpheader

// tchar marks the bytes allowed in a token (RFC 9110 §5.6.2).
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

// ValidName reports whether name is a valid field name: one or more token
// characters. A space, a colon, a non-ASCII byte or a control character
// makes it invalid.
func ValidName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// HopByHop reports whether name is a field that never passes on, whatever
// the message: those RFC 9110 §7.6.1 says describe one connection
// (Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade,
// and the framing and proxy fields Trailer, Proxy-Authenticate,
// Proxy-Authorization), and those Granary sets itself on each hop (Host,
// Content-Length, Content-Type, Date, Server, Dapr-Api-Token,
// Dapr-Reentrancy-Id). Case does not matter.
func HopByHop(name []byte) bool {
	// The length picks the few candidates, so most names cost one
	// comparison or none.
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 4:
		return equalFold(name, "host") || equalFold(name, "date")
	case 6:
		return equalFold(name, "server")
	case 7:
		return equalFold(name, "upgrade") || equalFold(name, "trailer")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 12:
		return equalFold(name, "content-type")
	case 14:
		return equalFold(name, "content-length") || equalFold(name, "dapr-api-token")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding")
	case 18:
		return equalFold(name, "dapr-reentrancy-id") || equalFold(name, "proxy-authenticate")
	case 19:
		return equalFold(name, "proxy-authorization")
	}
	return false
}

// IsConnection reports whether name is "Connection", in any case.
func IsConnection(name []byte) bool { return len(name) == 10 && equalFold(name, "connection") }

// equalFold reports whether b equals lower, a lower-case ASCII string,
// ignoring the case of b's ASCII letters only.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Connection collects the values of one message's Connection fields, to
// tell which other fields they name. The zero value holds none.
type Connection struct {
	first [4][]byte // most messages have one Connection field, if any
	n     int
	more  [][]byte
}

// Add records the value of one Connection field. The value must stay
// unchanged while c is used.
func (c *Connection) Add(value []byte) {
	if c.n < len(c.first) {
		c.first[c.n] = value
		c.n++
		return
	}
	c.more = append(c.more, value)
}

// Empty reports whether no Connection field was added.
func (c *Connection) Empty() bool { return c.n == 0 }

// Names reports whether one of the Connection fields lists name (RFC 9110
// §7.6.1: a comma-separated list of field names, case-insensitive).
func (c *Connection) Names(name []byte) bool {
	for _, v := range c.first[:c.n] {
		if listed(v, name) {
			return true
		}
	}
	for _, v := range c.more {
		if listed(v, name) {
			return true
		}
	}
	return false
}

// listed reports whether the comma-separated list holds name.
func listed(list, name []byte) bool {
	for len(list) > 0 {
		var elem []byte
		elem, list = cutComma(list)
		// Lists may hold empty elements ("a,,b"); they name nothing.
		if len(elem) > 0 && len(elem) == len(name) && foldBytes(elem, name) {
			return true
		}
	}
	return false
}

// cutComma returns the first element of a list, without the optional
// whitespace around it, and the rest after its comma.
func cutComma(list []byte) (elem, rest []byte) {
	end := len(list)
	for i, c := range list {
		if c == ',' {
			end = i
			rest = list[i+1:]
			break
		}
	}
	elem = list[:end]
	for len(elem) > 0 && (elem[0] == ' ' || elem[0] == '\t') {
		elem = elem[1:]
	}
	for len(elem) > 0 && (elem[len(elem)-1] == ' ' || elem[len(elem)-1] == '\t') {
		elem = elem[:len(elem)-1]
	}
	return elem, rest
}

// foldBytes compares two byte strings of equal length, ignoring the case of
// ASCII letters.
func foldBytes(a, b []byte) bool {
	for i := range a {
		x, y := a[i], b[i]
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
