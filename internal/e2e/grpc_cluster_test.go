package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/placement/ring"
)

// TestGRPCAcrossSilos: on three silos, the gRPC API of each silo reaches
// actors owned by the others, and state saved through one silo's gRPC API
// is read through another's.
func TestGRPCAcrossSilos(t *testing.T) {
	m := newMultiSilo(t, 3)
	m.waitSettled(t, 30*time.Second)
	clients := map[string]runtimev1.DaprClient{}
	for _, s := range m.silos {
		cc, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(s.grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		clients[s.id] = runtimev1.NewDaprClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Every silo calls one actor of each silo, its own and the others'.
	members := []string{"s1", "s2", "s3"}
	r := ring.New(members, 0)
	ids := map[string]string{} // actor → owner
	for _, owner := range members {
		id := actorOwnedBy(t, members, owner, "grpc-")
		for i, via := range members {
			resp, err := clients[via].InvokeActor(ctx, &runtimev1.InvokeActorRequest{
				ActorType: "Counter", ActorId: id, Method: "increment", Data: []byte(`{"by": 1}`)})
			if err != nil {
				t.Fatalf("InvokeActor of %s (owned by %s) through %s: %v", id, owner, via, err)
			}
			var v struct{ Count int64 }
			if err := json.Unmarshal(resp.GetData(), &v); err != nil || v.Count != int64(i+1) {
				t.Fatalf("InvokeActor of %s through %s answered %q, want count %d", id, via, resp.GetData(), i+1)
			}
		}
		if got, _ := r.OwnerOf("Counter", id); got != owner {
			t.Fatalf("test setup: %s is owned by %s, not %s", id, got, owner)
		}
		ids[id] = owner
	}
	// The apps' turn logs: each actor's three turns ran on its owner, in
	// one activation.
	var apps []*testutil.Proc
	for _, s := range m.silos {
		apps = append(apps, s.appLogs...)
	}
	testutil.Eventually(t, 10*time.Second, "every turn logged on the actor's owner", func() error {
		turns, _ := parseTurns(t, apps)
		for id, owner := range ids {
			var n int
			activations := map[string]bool{}
			for _, tr := range turns {
				if tr.actor != id {
					continue
				}
				if tr.silo != owner {
					return fmt.Errorf("a turn of %s ran on %s, not its owner %s", id, tr.silo, owner)
				}
				n++
				activations[tr.activation] = true
			}
			if n != len(members) || len(activations) != 1 {
				return fmt.Errorf("%s: %d turns in %d activations logged, want %d in 1", id, n, len(activations), len(members))
			}
		}
		return nil
	})

	// State through the gRPC API: written through s1, read through s2 and s3.
	for i := range 20 {
		key := "grpc-key-" + strconv.Itoa(i)
		_, err := clients["s1"].SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore",
			States: []*commonv1.StateItem{{Key: key, Value: fmt.Appendf(nil, `{"n":%d}`, i)}}})
		if err != nil {
			t.Fatalf("SaveState %s through s1: %v", key, err)
		}
		for _, via := range []string{"s2", "s3"} {
			got, err := clients[via].GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: key})
			if err != nil {
				t.Fatalf("GetState %s through %s: %v", key, via, err)
			}
			if want := fmt.Sprintf(`{"n":%d}`, i); string(got.GetData()) != want || got.GetEtag() == "" {
				t.Fatalf("GetState %s through %s: data %q etag %q, want %s and an etag", key, via, got.GetData(), got.GetEtag(), want)
			}
		}
	}
}
