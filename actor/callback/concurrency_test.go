package callback_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/granaryhq/granary/actor"
)

// Many goroutines registering, calling and reading status at once, under -race.
func TestConcurrentUse(t *testing.T) {
	app := newFakeApp(t, `{"entities":["Counter"]}`)
	rt := newRuntime(t)
	reg := newRegistry(t, rt, quickOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				_, body, _, _, err := invoke(ctx, rt, "Counter", "c"+strconv.Itoa(i), "m", &actor.Request{Body: []byte(strconv.Itoa(j))})
				if err != nil {
					// Re-registering with the same config keeps the type
					// serving throughout.
					errs <- err
					return
				}
				if body != "ok" {
					errs <- errors.New("unexpected body " + body)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := reg.Register(ctx, "app", app.URL(), true); err != nil {
				errs <- err
				return
			}
			reg.Apps()
			reg.Pending()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
