package app

import "testing"

// FuzzDecodeBody: a call's body, as the silo passes it from any client,
// never panics the app; it decodes or is refused with a client error.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"req":"q1","value":5}`, `{"req":"q1","expect":1,"value":2}`, `{"req":`, `[1]`, `{"value":"x"}`} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, needReq bool) {
		b, err := decodeBody(body, needReq)
		if err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("refused with status %d: %v", statusOf(err), err)
			}
			return
		}
		if needReq && b.Req == "" {
			t.Fatalf("accepted %q without a request ID", body)
		}
	})
}
