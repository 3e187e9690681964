package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// errProtocol marks a response that is not valid HTTP/1.x.
var errProtocol = errors.New("malformed HTTP response")

// response is what the generator keeps of one HTTP response.
type response struct {
	status    int
	keepAlive bool // the connection may carry the next request
}

// readResponse reads one complete response from r, discarding its body.
// noBody is set for HEAD requests. Errors wrap errProtocol when the bytes
// received are not HTTP; any other error is an I/O error.
func readResponse(r *bufio.Reader, noBody bool) (response, error) {
	for {
		resp, length, chunked, err := readHead(r)
		if err != nil {
			return resp, err
		}
		if resp.status >= 100 && resp.status < 200 && resp.status != 101 {
			continue // an interim response; the final one follows
		}
		switch {
		case noBody || resp.status == 204 || resp.status == 304 || resp.status == 101:
			// No body, whatever the headers say.
		case chunked:
			err = discardChunked(r)
		case length >= 0:
			err = discard(r, length)
		default:
			// Delimited by the server closing the connection.
			_, err = io.Copy(io.Discard, r)
			resp.keepAlive = false
		}
		if resp.status == 101 {
			resp.keepAlive = false // the connection no longer speaks HTTP
		}
		return resp, err
	}
}

// readHead reads the status line and headers. length is -1 when no
// Content-Length was sent.
func readHead(r *bufio.Reader) (resp response, length int64, chunked bool, err error) {
	line, err := readLine(r)
	if err != nil {
		return resp, 0, false, err
	}
	// "HTTP/1.1 200 OK": the version, a space, three digits, then a space or the end.
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		(line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return resp, 0, false, fmt.Errorf("%w: status line %q", errProtocol, clip(line))
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return resp, 0, false, fmt.Errorf("%w: status line %q", errProtocol, clip(line))
		}
		resp.status = resp.status*10 + int(c-'0')
	}
	if resp.status < 100 {
		return resp, 0, false, fmt.Errorf("%w: status %d", errProtocol, resp.status)
	}
	resp.keepAlive = line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise
	length = -1
	for {
		line, err := readLine(r)
		if err != nil {
			return resp, 0, false, err
		}
		if len(line) == 0 {
			return resp, length, chunked, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return resp, 0, false, fmt.Errorf("%w: header line %q", errProtocol, clip(line))
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseDecimal(value)
			if !ok || (length >= 0 && n != length) {
				return resp, 0, false, fmt.Errorf("%w: Content-Length %q", errProtocol, clip(value))
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = hasSuffixFold(value, "chunked")
			if !chunked {
				return resp, 0, false, fmt.Errorf("%w: unsupported Transfer-Encoding %q", errProtocol, clip(value))
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if containsFold(value, "close") {
				resp.keepAlive = false
			} else if containsFold(value, "keep-alive") {
				resp.keepAlive = true
			}
		}
	}
}

// discardChunked skips a chunked body and its trailers.
func discardChunked(r *bufio.Reader) error {
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		size, ok := parseHex(bytes.TrimSpace(line))
		if !ok {
			return fmt.Errorf("%w: chunk size %q", errProtocol, clip(line))
		}
		if size == 0 {
			break
		}
		if err := discard(r, size); err != nil {
			return err
		}
		end, err := readLine(r)
		if err != nil {
			return err
		}
		if len(end) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errProtocol)
		}
	}
	for { // trailers, up to the empty line
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// readLine returns the next line without its CRLF or LF. The slice is only
// valid until the next read. A line longer than the reader's buffer is a
// protocol error.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, r.Size())
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func discard(r *bufio.Reader, n int64) error {
	for n > 0 {
		step := int(min(n, 1<<30))
		d, err := r.Discard(step)
		n -= int64(d)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// parseDecimal parses a non-negative decimal of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseHex parses a chunk size of at most 15 hex digits.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && bytes.EqualFold(b[len(b)-len(suffix):], []byte(suffix))
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// clip shortens bytes quoted in an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
