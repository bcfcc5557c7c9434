// Package control holds the types of the leasesync control socket's
// protocol: one JSON Request per connection, answered by one JSON Reply.
// It depends on nothing but the standard library, so that failoverctl
// builds without cgo, sqlite, Prometheus or CoreDHCP.
package control

// Request is a request on the control socket.
type Request struct {
	Command string `json:"command"`
}

// Reply is the answer: Error is empty on success.
type Reply struct {
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
	Status  *Status `json:"status,omitempty"`
}

// Status is what `failoverctl status` shows of a relationship. Times are
// Unix seconds of this server's clock; 0 means never or none.
type Status struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"`
	Since int64  `json:"since"` // when the state was entered
	// Stos, when it differs from Since, is the start the protocol counts
	// the state from (kept across a restart, as ISC): RECOVER-WAIT ends
	// MCLT after it.
	Stos        int64  `json:"stos,omitempty"`
	Reason      string `json:"reason"`
	PeerState   string `json:"peer_state"`
	PeerSince   int64  `json:"peer_since,omitempty"`
	PeerAddress string `json:"peer_address"`
	Connected   bool   `json:"connected"`
	Contacted   bool   `json:"contacted"`
	MayServe    bool   `json:"may_serve"`
	MCLT        int64  `json:"mclt"`
	// NextTimer is the state machine's next deadline; Next lists
	// everything that will happen, and when, as the operator reads it.
	NextTimer     int64  `json:"next_timer,omitempty"`
	NextTimerWhat string `json:"next_timer_what,omitempty"`
	Next          []Next `json:"next,omitempty"`
	// TakeoverAt is, in PARTNER-DOWN, when the peer's free addresses
	// may be used (the start of PARTNER-DOWN plus MCLT).
	TakeoverAt  int64 `json:"takeover_at,omitempty"`
	ResyncSince int64 `json:"resync_since,omitempty"`
	LastContact int64 `json:"last_contact,omitempty"`
	ClockSkew   int64 `json:"clock_skew"`
	Unacked     int   `json:"unacked_updates"`
	Queued      int   `json:"queued_updates"`
	// FreeOwn and FreePeer total the pools' free addresses by owner.
	FreeOwn  int          `json:"free_own"`
	FreePeer int          `json:"free_peer"`
	Pools    []PoolStatus `json:"pools,omitempty"`
}

// Next is something that will happen: at At (0 when it waits for an event
// rather than a time), What.
type Next struct {
	What string `json:"what"`
	At   int64  `json:"at,omitempty"`
}

// PoolStatus counts one pool's addresses: free ones by owner, the others
// by binding state.
type PoolStatus struct {
	Range     string `json:"range"`
	FreeOwn   int    `json:"free_own"`
	FreePeer  int    `json:"free_peer"`
	Active    int    `json:"active"`
	Expired   int    `json:"expired"`
	Released  int    `json:"released"`
	Abandoned int    `json:"abandoned"`
	Reset     int    `json:"reset"`
}
