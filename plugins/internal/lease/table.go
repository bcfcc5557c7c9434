package lease

import (
	"container/heap"
	"fmt"
)

// Table is the in-memory view of every binding, indexed by address and by
// client, with the queues that make allocation O(1) amortised:
//
//   - a cursor per pool walks addresses that have never had a binding (a
//     pool of a million addresses costs nothing until it is used);
//   - a FIFO of addresses the owner offered as reusable (Offer: expired,
//     released, freed), oldest first, so that a returning client is likely
//     to find its old address still unused;
//   - a FIFO of offer holds, which all last the same time;
//   - a min-heap of lease ends, for expiry.
//
// The table does not decide who may have an address: its owner does, and
// the table never calls back into the owner's rules on its own. The owner
// offers the addresses its rules make reusable (Offer, RequeueAll, and
// the addresses Hold, Unhold and ExpireHolds free), and has the last word
// on each candidate Allocate finds (Judge).
//
// Table is not safe for concurrent use; its owner serialises access.
type Table struct {
	pools    []*pool
	byIP     index
	byClient map[string]IP
	// holds are addresses offered to a client and kept from others until
	// the hold ends; heldBy finds a client's held address.
	holds  map[IP]hold
	heldBy map[string]IP
	holdQ  fifo[holdItem]
	freeQ  fifo[IP]
	ends   endHeap
	// excluded are addresses of the pools Allocate never picks (host
	// reservations): they go only to their own client, by the owner.
	excluded map[IP]bool
	// inPool counts the bindings of the pools by state, so that Counts
	// (the control socket's status, pool balancing) is O(1) rather than a
	// walk of every binding under the owner's lock.
	inPool [256]uint64
}

type entry struct {
	Binding
	queued bool  // in freeQ
	hidx   int32 // index in ends, or -1 (32 bits: the entry fits 128 bytes)
}

type hold struct {
	key   string
	until int64
}

type holdItem struct {
	ip    IP
	until int64
}

type pool struct {
	Range
	next IP   // next never-used candidate
	done bool // next has passed End
	// slots index the pool's bindings by offset from Start.
	slots []*entry
}

// index finds the entry of an address: for the pools a slice (8 bytes an
// address, no hashing: a million-address pool costs 8 MB, a map of a
// million entries five times that), a map for bindings outside them (a
// pool removed from the configuration, a peer's address).
type index struct {
	pools []*pool
	other map[IP]*entry
	n     int
}

func (x *index) slot(ip IP) **entry {
	for _, p := range x.pools {
		if p.Contains(ip) {
			return &p.slots[ip-p.Start]
		}
	}
	return nil
}

func (x *index) get(ip IP) (*entry, bool) {
	if sl := x.slot(ip); sl != nil {
		return *sl, *sl != nil
	}
	e, ok := x.other[ip]
	return e, ok
}

// add indexes a new entry (ip has none).
func (x *index) add(ip IP, e *entry) {
	x.n++
	if sl := x.slot(ip); sl != nil {
		*sl = e
		return
	}
	x.other[ip] = e
}

// each calls fn for every entry, the pools' in address order, until fn
// returns false.
func (x *index) each(fn func(IP, *entry) bool) {
	for _, p := range x.pools {
		for i, e := range p.slots {
			if e != nil && !fn(p.Start+IP(i), e) {
				return
			}
		}
	}
	for ip, e := range x.other {
		if !fn(ip, e) {
			return
		}
	}
}

// DefaultReusable is the reuse rule of a server without a peer: any free,
// expired or released address may go to a new client.
func DefaultReusable(b *Binding) bool {
	return b.State == Free || b.State == Expired || b.State == Released
}

// Verdict is the owner's word on a candidate Allocate found.
type Verdict uint8

const (
	// Take: the address goes to the caller.
	Take Verdict = iota
	// Skip: a queued binding the rules no longer make reusable leaves
	// the queue; the owner offers it again when they do (Offer,
	// RequeueAll).
	Skip
	// Wait: not now. The candidate stays where it is (a never-used one
	// its pool's next, a queued one first in the queue).
	Wait
)

// Judge is the owner's rule on a candidate for allocation: ip with its
// binding b, or b nil for an address that has never had one (FREE, and so
// the primary's).
type Judge func(ip IP, b *Binding) Verdict

// DefaultJudge is the rule of a server without a peer: every never-used
// address, and the bindings DefaultReusable accepts.
func DefaultJudge(_ IP, b *Binding) Verdict {
	if b == nil || DefaultReusable(b) {
		return Take
	}
	return Skip
}

// NewTable returns an empty table over pools (which must not overlap).
func NewTable(pools []Range) *Table {
	t := &Table{
		byIP:     index{other: make(map[IP]*entry)},
		byClient: make(map[string]IP),
		holds:    make(map[IP]hold),
		heldBy:   make(map[string]IP),
	}
	for _, r := range pools {
		t.pools = append(t.pools, &pool{Range: r, next: r.Start, slots: make([]*entry, r.Size())})
	}
	t.byIP.pools = t.pools
	return t
}

// Exclude keeps ip from Allocate for good (a host reservation): neither
// the never-used walk nor the queue of offered addresses yields it.
func (t *Table) Exclude(ip IP) {
	if t.excluded == nil {
		t.excluded = make(map[IP]bool)
	}
	t.excluded[ip] = true
}

// Reserve sizes an empty table's indexes for n bindings, before a load.
func (t *Table) Reserve(n int) {
	if t.byIP.n > 0 || n <= 0 {
		return
	}
	t.byClient = make(map[string]IP, n)
	t.ends = make(endHeap, 0, n)
}

// InPool reports whether ip belongs to one of the table's pools.
func (t *Table) InPool(ip IP) bool {
	for _, p := range t.pools {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Get returns the binding of ip. The returned binding is a copy; change it
// with Put.
func (t *Table) Get(ip IP) (Binding, bool) {
	e, ok := t.byIP.get(ip)
	if !ok {
		return Binding{}, false
	}
	return e.Binding, true
}

// ByClient returns the most recent binding of the client with key, if the
// address still belongs to that client.
func (t *Table) ByClient(key string) (Binding, bool) {
	ip, ok := t.byClient[key]
	if !ok {
		return Binding{}, false
	}
	e, ok := t.byIP.get(ip)
	if !ok || e.Key() != key {
		delete(t.byClient, key)
		return Binding{}, false
	}
	return e.Binding, true
}

// Len is the number of addresses with a binding.
func (t *Table) Len() int { return t.byIP.n }

// Put stores b, replacing any binding of b.IP, and updates every index. It
// does not make b.IP allocatable: Offer does, if the owner's rules make b
// reusable.
func (t *Table) Put(b Binding) {
	e, ok := t.byIP.get(b.IP)
	pooled := t.InPool(b.IP)
	if !ok {
		e = &entry{hidx: -1}
		t.byIP.add(b.IP, e)
	} else {
		if pooled {
			t.inPool[e.State]--
		}
		if oldKey := e.Key(); oldKey != "" && oldKey != b.Key() && t.byClient[oldKey] == b.IP {
			delete(t.byClient, oldKey)
		}
	}
	if pooled {
		t.inPool[b.State]++
	}
	e.Binding = b
	if k := b.Key(); k != "" {
		t.byClient[k] = b.IP
	}
	switch {
	case timed(&b):
		if e.hidx >= 0 {
			heap.Fix(&t.ends, int(e.hidx))
		} else {
			heap.Push(&t.ends, e)
		}
	case e.hidx >= 0:
		heap.Remove(&t.ends, int(e.hidx))
	}
}

// Offer queues ip among the candidates of Allocate: its owner's rules make
// its binding reusable now. An address outside the pools, without a
// binding, or queued already is left as it is.
func (t *Table) Offer(ip IP) {
	if e, ok := t.byIP.get(ip); ok && !e.queued && t.InPool(ip) {
		e.queued = true
		t.freeQ.push(ip)
	}
}

// timed reports whether b waits on the heap for its End: an ACTIVE lease
// to expire, an ABANDONED address to be freed once its hold is over -- but
// only once the peer has it (not Pending): it goes FREE on its own only
// after the peer has acknowledged it, as EXPIRED and RELEASED wait for the
// peer's ack (a single server never has a pending change). Until then a
// peer that did not hear the DECLINE may hold the address as ACTIVE. The
// Put that clears Pending puts it on the heap.
func timed(b *Binding) bool {
	switch b.State {
	case Active:
		return b.End != 0
	case Abandoned:
		return b.End != 0 && !b.Pending
	}
	return false
}

// RequeueAll offers every binding of the pools that reusable accepts, for
// an owner whose rules changed their answers (a failover state change,
// time passing in PARTNER-DOWN). It is linear in the bindings.
func (t *Table) RequeueAll(reusable func(*Binding) bool) {
	t.byIP.each(func(ip IP, e *entry) bool {
		if !e.queued && t.InPool(ip) && reusable(&e.Binding) {
			e.queued = true
			t.freeQ.push(ip)
		}
		return true
	})
}

// Hold keeps ip for the client with key until the given time, so that no
// other client is offered it meanwhile.
//
// The indexes stay bounded by the number of addresses whatever the
// clients send: a lapsed hold taken over by another client drops the first
// client's index entry, and a hold renewed within the same second queues
// no second expiry.
//
// It returns the address the client held before, if that hold ended: the
// owner offers it if its rules make it reusable (Offer).
func (t *Table) Hold(ip IP, key string, until int64) (freed IP, ok bool) {
	if old, held := t.heldBy[key]; held && old != ip {
		freed, ok = old, t.release(old)
	}
	prev, had := t.holds[ip]
	if had && prev.key != key && t.heldBy[prev.key] == ip {
		delete(t.heldBy, prev.key)
	}
	t.holds[ip] = hold{key: key, until: until}
	t.heldBy[key] = ip
	if !had || prev.until != until {
		t.holdQ.push(holdItem{ip: ip, until: until})
	}
	return freed, ok
}

// HoldCounts returns the sizes of the hold indexes, for tests of their
// bounds.
func (t *Table) HoldCounts() (holds, heldBy, queued int) {
	return len(t.holds), len(t.heldBy), t.holdQ.len()
}

// Held returns the address held for the client with key, if its hold has
// not ended.
func (t *Table) Held(key string, now int64) (IP, bool) {
	ip, ok := t.heldBy[key]
	if !ok {
		return 0, false
	}
	if h := t.holds[ip]; h.key != key || h.until <= now {
		return 0, false
	}
	return ip, true
}

// HeldByOther reports whether ip is held for a client other than key.
func (t *Table) HeldByOther(ip IP, key string, now int64) bool {
	h, ok := t.holds[ip]
	return ok && h.key != key && h.until > now
}

// ClearHold ends the hold on ip without making the address available: the
// caller is about to bind it.
func (t *Table) ClearHold(ip IP) {
	h, ok := t.holds[ip]
	if !ok {
		return
	}
	delete(t.holds, ip)
	if t.heldBy[h.key] == ip {
		delete(t.heldBy, h.key)
	}
}

// Unhold ends the hold of the client with key, if any. It returns the
// address freed: the owner offers it if its rules make it reusable.
func (t *Table) Unhold(key string) (IP, bool) {
	if ip, ok := t.heldBy[key]; ok && t.release(ip) {
		return ip, true
	}
	return 0, false
}

// release ends the hold of ip; it reports whether there was one.
func (t *Table) release(ip IP) bool {
	h, ok := t.holds[ip]
	if !ok {
		return false
	}
	delete(t.holds, ip)
	if t.heldBy[h.key] == ip {
		delete(t.heldBy, h.key)
	}
	t.remember(ip)
	return true
}

// remember gives a freed address of the pools a binding, so that the
// owner can offer it.
func (t *Table) remember(ip IP) {
	if !t.InPool(ip) {
		return
	}
	if _, ok := t.byIP.get(ip); !ok {
		// A never-used address whose offer lapsed: the cursor has passed
		// it, so remember it as free (whoever may allocate it now: a
		// never-used address is FREE, and one left out here would never
		// be allocated again).
		t.byIP.add(ip, &entry{Binding: Binding{IP: ip, State: Free}, hidx: -1})
		t.inPool[Free]++
	}
}

// ExpireHolds ends every hold whose time has come. It returns the
// addresses freed, in the order their holds ended: the owner offers those
// its rules make reusable.
func (t *Table) ExpireHolds(now int64) []IP {
	var freed []IP
	for t.holdQ.len() > 0 && t.holdQ.peek().until <= now {
		it := t.holdQ.pop()
		if h, ok := t.holds[it.ip]; ok && h.until == it.until {
			t.release(it.ip)
			freed = append(freed, it.ip)
		}
	}
	return freed
}

// Allocate picks an address for a new client: first one that has never been
// used, then the one that has been offered longest. judge (nil:
// DefaultJudge) is the owner's word on each candidate. A candidate it
// makes Wait is not used up: a never-used one stays its pool's next (the
// walk goes on to the next pool) and a queued one stays first in the
// queue, and Allocate reports none; one it Skips leaves the queue. The
// owner's rules are meant to make a candidate Wait only for reasons that
// hold for every candidate (the failover state, the time): a refusal of
// one address alone would keep the ones behind it waiting. The address is
// not held or bound: the caller does that. It returns false when the
// pools are exhausted.
func (t *Table) Allocate(now int64, judge Judge) (IP, bool) {
	if judge == nil {
		judge = DefaultJudge
	}
	for _, p := range t.pools {
		for !p.done {
			ip := p.next
			if _, used := t.byIP.get(ip); used || t.heldAt(ip, now) || t.excluded[ip] {
				// A binding or a hold accounts for it, or it is
				// excluded.
				p.advance()
				continue
			}
			if judge(ip, nil) != Take {
				break
			}
			p.advance()
			return ip, true
		}
	}
	for t.freeQ.len() > 0 {
		ip := t.freeQ.peek()
		e, ok := t.byIP.get(ip)
		v := Skip
		if ok && t.InPool(ip) && !t.heldAt(ip, now) && !t.excluded[ip] {
			v = judge(ip, &e.Binding)
		}
		switch v {
		case Wait:
			return 0, false
		case Skip:
			// Not (or no longer) reusable: the owner offers it again
			// when it is; a held one comes back when its hold lapses.
			t.freeQ.pop()
			if ok {
				e.queued = false
			}
			continue
		}
		t.freeQ.pop()
		e.queued = false
		return ip, true
	}
	return 0, false
}

// advance moves the never-used cursor past next.
func (p *pool) advance() {
	if p.next == p.End {
		p.done = true
	} else {
		p.next++
	}
}

func (t *Table) heldAt(ip IP, now int64) bool {
	h, ok := t.holds[ip]
	return ok && h.until > now
}

// NextEnd returns the binding whose End is earliest, if it is not after
// now. The caller changes it with Put (which takes it off the heap when it
// is no longer ACTIVE or ABANDONED, or moves it when End changed).
func (t *Table) NextEnd(now int64) (Binding, bool) {
	if len(t.ends) == 0 || t.ends[0].End > now {
		return Binding{}, false
	}
	return t.ends[0].Binding, true
}

// Range calls fn for every binding until fn returns false.
func (t *Table) Range(fn func(*Binding) bool) {
	t.byIP.each(func(_ IP, e *entry) bool { return fn(&e.Binding) })
}

// Counts returns how many addresses of the pools are in each state;
// never-used addresses count as FREE. It costs O(1) in the bindings.
func (t *Table) Counts() map[State]uint64 {
	c := make(map[State]uint64)
	for st, n := range t.inPool {
		if n > 0 {
			c[State(st)] = n
		}
	}
	c[Free] = t.Count(Free)
	return c
}

// Count is Counts()[st] without building the map: O(pools).
func (t *Table) Count(st State) uint64 {
	n := t.inPool[st]
	if st == Free {
		var size, known uint64
		for _, p := range t.pools {
			size += p.Size()
		}
		for _, k := range t.inPool {
			known += k
		}
		n += size - known
	}
	return n
}

// PoolCount is how many addresses of one pool are in each state (indexed
// by State); never-used addresses count as FREE.
type PoolCount struct {
	Range  Range
	States [Backup + 1]uint64
}

// PoolCounts returns Counts for each pool, in the table's pool order. It
// walks every binding: for status requests and metric scrapes, not for
// the packet path.
func (t *Table) PoolCounts() []PoolCount {
	out := make([]PoolCount, len(t.pools))
	known := make([]uint64, len(t.pools))
	for i, p := range t.pools {
		out[i].Range = p.Range
	}
	t.byIP.each(func(ip IP, e *entry) bool {
		for i, p := range t.pools {
			if p.Contains(ip) {
				if e.State.Valid() {
					out[i].States[e.State]++
				}
				known[i]++
				break
			}
		}
		return true
	})
	for i, p := range t.pools {
		out[i].States[Free] += p.Size() - known[i]
	}
	return out
}

// Validate checks the internal consistency of the indexes, for tests.
func (t *Table) Validate() error {
	var err error
	var counts [256]uint64
	n := 0
	t.byIP.each(func(ip IP, e *entry) bool {
		n++
		if e.IP != ip {
			err = fmt.Errorf("binding of %s is indexed under %s", e.IP, ip)
			return false
		}
		if k := e.Key(); k != "" {
			if _, ok := t.byClient[k]; !ok {
				err = fmt.Errorf("client of %s is not indexed", e.Binding)
				return false
			}
		}
		if t.InPool(ip) {
			counts[e.State]++
		}
		return true
	})
	if err != nil {
		return err
	}
	if n != t.byIP.n {
		return fmt.Errorf("%d bindings indexed, %d counted", n, t.byIP.n)
	}
	if counts != t.inPool {
		return fmt.Errorf("state counts %v, want %v", t.inPool, counts)
	}
	for i, e := range t.ends {
		if int(e.hidx) != i {
			return fmt.Errorf("heap index of %s is %d, want %d", e.IP, e.hidx, i)
		}
	}
	for ip, h := range t.holds {
		if t.heldBy[h.key] != ip {
			return fmt.Errorf("hold of %s by %q is not indexed", ip, h.key)
		}
	}
	return nil
}

// fifo is a slice-backed queue that reuses its space.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int { return len(q.items) - q.head }
func (q *fifo[T]) peek() T  { return q.items[q.head] }
func (q *fifo[T]) push(v T) { q.items = append(q.items, v) }
func (q *fifo[T]) pop() T {
	v := q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	if q.head > 64 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return v
}

// endHeap orders ACTIVE and ABANDONED bindings by End.
type endHeap []*entry

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].End < h[j].End }
func (h endHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx = int32(i)
	h[j].hidx = int32(j)
}
func (h *endHeap) Push(x any) {
	e := x.(*entry)
	e.hidx = int32(len(*h))
	*h = append(*h, e)
}
func (h *endHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.hidx = -1
	*h = old[:len(old)-1]
	return e
}
