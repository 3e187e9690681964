package benchproc

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxCallBody bounds the part of a response Call returns and quotes.
const maxCallBody = 64 << 10

// Call sends one request (a JSON body when body is not empty) and checks
// its status. It returns the start of the response body, which an error
// quotes; the rest is read and dropped so the connection can be reused.
func Call(ctx context.Context, client *http.Client, method, url, body string, want int) ([]byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCallBody))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	switch {
	case resp.StatusCode != want:
		quoted := data
		if len(quoted) > 512 {
			quoted = quoted[:512]
		}
		return data, fmt.Errorf("%s %s: status %d (want %d): %s", method, url, resp.StatusCode, want, strings.TrimSpace(string(quoted)))
	case err != nil:
		return data, fmt.Errorf("%s %s: reading the response: %w", method, url, err)
	}
	return data, nil
}
