package benchproc

import "testing"

func TestFreePortsDiffer(t *testing.T) {
	ports, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] || ports[0] == 0 {
		t.Errorf("ports %v", ports)
	}
}
