package reminders

// dueHeap orders entries by next due time.
type dueHeap []*entry

func (h dueHeap) less(i, j int) bool { return h[i].next < h[j].next }

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = int32(i)
	h[j].idx = int32(j)
}

func (h *dueHeap) push(e *entry) {
	e.idx = int32(len(*h))
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

// pop removes and returns the earliest entry; the heap must not be empty.
func (h *dueHeap) pop() *entry {
	return h.remove(0)
}

// remove takes the entry at position i out of the heap.
func (h *dueHeap) remove(i int) *entry {
	old := *h
	n := len(old) - 1
	e := old[i]
	if i != n {
		h.swap(i, n)
	}
	old[n] = nil
	*h = old[:n]
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
	e.idx = -1
	return e
}

func (h dueHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h dueHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
