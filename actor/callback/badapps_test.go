package callback_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
)

func TestBadApps(t *testing.T) {
	rt := newRuntime(t)
	opts := calmOptions()
	opts.CallTimeout = 200 * time.Millisecond
	opts.MaxResponseSize = 4096
	reg := newRegistry(t, rt, opts)
	ctx := ctxFor(t)

	good := newFakeApp(t, `{"entities":["Good"]}`)
	if err := reg.Register(ctx, "good", good.URL(), true); err != nil {
		t.Fatal(err)
	}
	goodStillServes := func(t *testing.T) {
		t.Helper()
		status, body, _, _, err := invoke(ctx, rt, "Good", "g", "m", nil)
		if err != nil || status != http.StatusOK || body != "ok" {
			t.Fatalf("the good app stopped serving: %d %q %v", status, body, err)
		}
	}

	t.Run("garbage config", func(t *testing.T) {
		app := newFakeApp(t, `<html>it works!</html>`)
		err := reg.Register(ctx, "garbage", app.URL(), true)
		if err == nil || !strings.Contains(err.Error(), "not valid JSON") || !strings.Contains(err.Error(), "garbage") {
			t.Errorf("Register: %v; want a JSON error naming the app", err)
		}
		goodStillServes(t)
	})
	t.Run("config error status", func(t *testing.T) {
		app := newFakeApp(t, `oops`)
		app.set(func(a *fakeApp) { a.configStatus = http.StatusInternalServerError })
		err := reg.Register(ctx, "failing", app.URL(), true)
		if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "oops") {
			t.Errorf("Register: %v; want the status and body", err)
		}
		goodStillServes(t)
	})
	t.Run("config too large", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Big"],"pad":"`+strings.Repeat("x", 8192)+`"}`)
		if err := reg.Register(ctx, "big", app.URL(), true); err == nil {
			t.Error("Register of an app with a config larger than MaxResponseSize succeeded")
		}
		if rt.Hosts("Big") {
			t.Error("type of an oversized config hosted")
		}
		goodStillServes(t)
	})
	t.Run("no config route", func(t *testing.T) {
		app := newFakeApp(t, "")
		app.set(func(a *fakeApp) { a.configStatus = http.StatusNotFound })
		// Node mode asks for an app: a URL without a config is not one.
		if err := reg.Register(ctx, "noconfig", app.URL(), true); !errors.Is(err, callback.ErrNotAnApp) {
			t.Errorf("node mode, an app answering 404 to /dapr/config: err = %v, want ErrNotAnApp", err)
		}
		if _, ok := appStatus(reg, "noconfig"); ok {
			t.Error("a URL without a config stayed registered in node mode")
		}
		// A sidecar's app that serves no config hosts no actors.
		if err := reg.Register(ctx, "noconfig", app.URL(), false); err != nil {
			t.Errorf("sidecar mode, an app answering 404 to /dapr/config (no actors): %v", err)
		}
		if st, ok := appStatus(reg, "noconfig"); !ok || len(st.Types) != 0 || !st.Healthy {
			t.Errorf("status = %+v, %v", st, ok)
		}
		reg.Unregister(ctx, "noconfig")
	})
	t.Run("slow config", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Slow"]}`)
		app.set(func(a *fakeApp) { a.onConfig = app.hang })
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := reg.Register(rctx, "slowcfg", app.URL(), true)
		if err == nil {
			t.Error("Register of an app that never answers its config succeeded")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Register took %v; the context allowed 200ms", took)
		}
		goodStillServes(t)
	})
	t.Run("response too large", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Chatty"]}`)
		app.set(func(a *fakeApp) {
			a.actor = func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/small") {
					w.Write([]byte("small"))
					return
				}
				w.Write([]byte(strings.Repeat("y", 64<<10)))
			}
		})
		if err := reg.Register(ctx, "chatty", app.URL(), true); err != nil {
			t.Fatal(err)
		}
		resp, err := rt.Invoke(ctx, actor.ID{Type: "Chatty", ID: "c"}, &actor.Request{Method: "big"})
		if err == nil {
			resp.Release()
			t.Fatalf("a %d-byte answer with MaxResponseSize %d succeeded with %d bytes", 64<<10, opts.MaxResponseSize, len(resp.Body))
		}
		if !strings.Contains(err.Error(), "chatty") {
			t.Errorf("error %q does not name the app", err)
		}
		// The app's next answer, within bounds, is fine.
		if _, body, _, _, err := invoke(ctx, rt, "Chatty", "c", "small", nil); err != nil || body != "small" {
			t.Errorf("next call = %q %v", body, err)
		}
		goodStillServes(t)
	})
	t.Run("slow actor", func(t *testing.T) {
		app := newSlothApp(t)
		if err := reg.Register(ctx, "sloth", app.URL(), true); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, _, _, err := invoke(ctx, rt, "Sloth", "s", "slow", nil)
		took := time.Since(start)
		if err == nil {
			t.Fatal("a call the app never answers succeeded")
		}
		if !strings.Contains(err.Error(), "sloth") || !strings.Contains(err.Error(), "200ms") {
			t.Errorf("error %q does not name the app and the timeout", err)
		}
		if took < opts.CallTimeout || took > 2*time.Second {
			t.Errorf("the call gave up after %v; CallTimeout is %v", took, opts.CallTimeout)
		}
		// A shorter context deadline wins over CallTimeout.
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		start = time.Now()
		_, _, _, _, err = invoke(cctx, rt, "Sloth", "s", "slow", nil)
		cancel()
		if err == nil || strings.Contains(err.Error(), "200ms") || time.Since(start) > time.Second {
			t.Errorf("call with a 50ms deadline: %v after %v; want it bounded by the deadline", err, time.Since(start))
		}
		if _, body, _, _, err := invoke(ctx, rt, "Sloth", "s", "fast", nil); err != nil || body != "quick" {
			t.Errorf("next call = %q %v", body, err)
		}
		goodStillServes(t)
	})
	t.Run("app goes away", func(t *testing.T) {
		app := newFakeApp(t, `{"entities":["Ghost"]}`)
		if err := reg.Register(ctx, "ghost", app.URL(), true); err != nil {
			t.Fatal(err)
		}
		app.srv.Close()
		_, _, _, _, err := invoke(ctx, rt, "Ghost", "g", "m", nil)
		if err == nil {
			t.Fatal("call to a closed app succeeded")
		}
		if !strings.Contains(err.Error(), "ghost") {
			t.Errorf("error %q does not name the app", err)
		}
		goodStillServes(t)
	})
	t.Run("app answers garbage to a call", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		cfg := `{"entities":["Liar"]}`
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 4096)
					n, _ := c.Read(buf)
					if strings.HasPrefix(string(buf[:n]), "GET /dapr/config") {
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(cfg)) + "\r\nConnection: close\r\n\r\n" + cfg))
						return
					}
					c.Write([]byte("SPDY/9 banana\r\n\x00\x01\x02"))
				}()
			}
		}()
		if err := reg.Register(ctx, "liar", "http://"+l.Addr().String(), true); err != nil {
			t.Fatal(err)
		}
		if _, _, _, _, err := invoke(ctx, rt, "Liar", "l", "m", nil); err == nil {
			t.Error("a garbage HTTP answer was accepted")
		}
		goodStillServes(t)
	})
}
