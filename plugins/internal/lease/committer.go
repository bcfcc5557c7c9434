package lease

import "sync"

// Committer writes bindings to a Store in groups: every binding submitted
// while a transaction is being written goes into the next one, so that N
// concurrent clients cost one transaction (one fsync) rather than N. The
// order of Submit calls is the order in which rows reach the store.
type Committer struct {
	store Store
	mu    sync.Mutex
	cur   *Batch
	// sealed batches are full and wait their turn, oldest first.
	sealed []*Batch
	// closed is set by Close; no batch is accepted afterwards.
	closed bool
	wake   chan struct{}
	exited chan struct{}
	// MaxBatch caps the rows of one transaction (0: no cap), so that one
	// huge write does not delay every waiter.
	maxBatch int
}

// Batch is one transaction's worth of rows; every submitter of a row in it
// waits on it.
type Batch struct {
	rows []Binding
	done chan struct{}
	err  error
}

// Wait blocks until the batch is durable (nil) or has failed.
func (b *Batch) Wait() error {
	<-b.done
	return b.err
}

// Done is closed when the batch is settled; Err is then its result.
func (b *Batch) Done() <-chan struct{} { return b.done }

// Err is the batch's result; valid after Done is closed.
func (b *Batch) Err() error { return b.err }

func newBatch() *Batch { return &Batch{done: make(chan struct{})} }

// NewPending returns a batch that no committer writes: it settles when its
// owner calls Finish, e.g. after work that must follow a commit.
func NewPending() *Batch { return newBatch() }

// Finish settles a batch from NewPending with err. It must be called once,
// and never on a committer's batch.
func (b *Batch) Finish(err error) {
	b.err = err
	close(b.done)
}

var closedBatch = func() *Batch {
	b := newBatch()
	b.err = ErrClosed
	close(b.done)
	return b
}()

// NewCommitter starts a committer over store. maxBatch caps the rows in
// one transaction (0 means no cap).
func NewCommitter(store Store, maxBatch int) *Committer {
	c := &Committer{
		store:    store,
		cur:      newBatch(),
		wake:     make(chan struct{}, 1),
		exited:   make(chan struct{}),
		maxBatch: maxBatch,
	}
	go c.loop()
	return c
}

// Submit queues b for the next transaction and returns the batch to wait
// on. Callers that need a consistent order (the binding's owner) call it
// under their own lock. Slices in b must not be modified afterwards.
func (c *Committer) Submit(b Binding) *Batch {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return closedBatch
	}
	bt := c.cur
	bt.rows = append(bt.rows, b)
	if c.maxBatch > 0 && len(bt.rows) >= c.maxBatch {
		// Seal this batch; later rows go into the next one.
		c.cur = newBatch()
		c.sealed = append(c.sealed, bt)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return bt
}

func (c *Committer) loop() {
	defer close(c.exited)
	for {
		<-c.wake
		for {
			c.mu.Lock()
			var bt *Batch
			if len(c.sealed) > 0 {
				bt = c.sealed[0]
				c.sealed = c.sealed[1:]
			} else if len(c.cur.rows) > 0 {
				bt = c.cur
				c.cur = newBatch()
			}
			closed := c.closed
			c.mu.Unlock()
			if bt == nil {
				if closed {
					return
				}
				break
			}
			bt.err = c.store.Write(bt.rows)
			close(bt.done)
		}
	}
}

// Close writes what has been submitted, stops accepting rows and closes the
// store.
func (c *Committer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.exited
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.exited
	return c.store.Close()
}
