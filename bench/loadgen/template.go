package loadgen

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Placeholders recognised in path and body templates. Any other text,
// including other braces (as in JSON bodies), is copied literally.
const (
	ActorPlaceholder = "{actor}" // the actor ID of this request
	SeqPlaceholder   = "{n}"     // the request's sequence number, counted from 0 across all connections
)

// Request describes the HTTP request every connection sends, over and over.
type Request struct {
	// Method is the HTTP method, e.g. "GET", "POST", "PUT".
	Method string
	// Path is the request target, starting with "/", and may contain {actor} and {n}.
	Path string
	// Body is sent with every request and may contain {actor} and {n}. When it
	// is not empty and Headers sets no Content-Type, application/json is sent.
	Body string
	// Headers are added to every request. Host, Content-Length and
	// Connection are set by the generator and may not appear here.
	Headers map[string]string
	// Actors are the IDs substituted for {actor}, round-robin across all
	// connections: request n uses Actors[n % len(Actors)]. One entry makes
	// a fixed actor. Required when Path or Body contains {actor}.
	Actors []string
}

// ActorIDs returns n actor IDs prefix+"0" … prefix+(n-1).
func ActorIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + strconv.Itoa(i)
	}
	return ids
}

// segment is one piece of a template: literal text, or a placeholder.
type segment struct {
	lit  string
	kind segmentKind
}

type segmentKind uint8

const (
	literal segmentKind = iota
	actorID
	seqNum
)

// template is a parsed path or body template.
type template []segment

func parseTemplate(s string) template {
	var t template
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			break
		}
		var kind segmentKind
		var n int
		switch {
		case strings.HasPrefix(s[i:], ActorPlaceholder):
			kind, n = actorID, len(ActorPlaceholder)
		case strings.HasPrefix(s[i:], SeqPlaceholder):
			kind, n = seqNum, len(SeqPlaceholder)
		default:
			// Not a placeholder: keep the brace as text and look further on.
			t = t.appendLiteral(s[:i+1])
			s = s[i+1:]
			continue
		}
		t = t.appendLiteral(s[:i])
		t = append(t, segment{kind: kind})
		s = s[i+n:]
	}
	return t.appendLiteral(s)
}

// appendLiteral adds text, merging it with a preceding literal.
func (t template) appendLiteral(s string) template {
	if s == "" {
		return t
	}
	if n := len(t); n > 0 && t[n-1].kind == literal {
		t[n-1].lit += s
		return t
	}
	return append(t, segment{lit: s})
}

func (t template) uses(kind segmentKind) bool {
	return slices.ContainsFunc(t, func(s segment) bool { return s.kind == kind })
}

// render appends the template with its placeholders filled in.
func (t template) render(dst []byte, actor string, n uint64) []byte {
	for _, s := range t {
		switch s.kind {
		case literal:
			dst = append(dst, s.lit...)
		case actorID:
			dst = append(dst, actor...)
		case seqNum:
			dst = strconv.AppendUint(dst, n, 10)
		}
	}
	return dst
}

// compiledRequest renders the bytes of request n without allocating.
type compiledRequest struct {
	method  string
	headers map[string]string // the extra headers, with Content-Type when defaulted
	head    string            // "METHOD "
	path    template          // request target
	fixed   string            // " HTTP/1.1\r\nHost: …\r\n" plus the extra headers
	body    template
	sendCL  bool // send Content-Length even when the body is empty
	actors  []string
	noBody  bool // a HEAD request: the response has no body
}

// checkRequestLine refuses a method or request target that would not make
// a valid request line.
func checkRequestLine(method, path string) error {
	if !isToken(method) {
		return fmt.Errorf("request method %q is not an HTTP method token", method)
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		return fmt.Errorf("request path %q must start with / and contain no spaces or line breaks", path)
	}
	return nil
}

func compileRequest(r Request, host string) (*compiledRequest, error) {
	if err := checkRequestLine(r.Method, r.Path); err != nil {
		return nil, err
	}
	c := &compiledRequest{
		method:  r.Method,
		headers: map[string]string{},
		head:    r.Method + " ",
		path:    parseTemplate(r.Path),
		body:    parseTemplate(r.Body),
		actors:  r.Actors,
		noBody:  r.Method == "HEAD",
	}
	if (c.path.uses(actorID) || c.body.uses(actorID)) && len(r.Actors) == 0 {
		return nil, fmt.Errorf("request uses %s but no actor IDs are given", ActorPlaceholder)
	}
	var b strings.Builder
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(host)
	b.WriteString("\r\n")
	names := make([]string, 0, len(r.Headers))
	for name := range r.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	hasContentType := false
	for _, name := range names {
		value := r.Headers[name]
		if !isToken(name) || strings.ContainsAny(value, "\r\n") {
			return nil, fmt.Errorf("request header %q: invalid name or value", name)
		}
		switch strings.ToLower(name) {
		case "host", "content-length", "connection", "transfer-encoding":
			return nil, fmt.Errorf("request header %q is set by the load generator", name)
		case "content-type":
			hasContentType = true
		}
		b.WriteString(name + ": " + value + "\r\n")
		c.headers[name] = value
	}
	if r.Body != "" && !hasContentType {
		b.WriteString("Content-Type: application/json\r\n")
		c.headers["Content-Type"] = "application/json"
	}
	c.fixed = b.String()
	switch r.Method {
	case "POST", "PUT", "PATCH":
		c.sendCL = true
	}
	return c, nil
}

// render appends request n (0-based) to dst, using bodyBuf as scratch
// space for the body; it returns both buffers for reuse.
func (c *compiledRequest) render(dst, bodyBuf []byte, n uint64) (req, body []byte) {
	actor := ""
	if len(c.actors) > 0 {
		actor = c.actors[n%uint64(len(c.actors))]
	}
	body = c.body.render(bodyBuf[:0], actor, n)
	dst = append(dst[:0], c.head...)
	dst = c.path.render(dst, actor, n)
	dst = append(dst, c.fixed...)
	if len(body) > 0 || c.sendCL {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, body...)
	return dst, body
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
