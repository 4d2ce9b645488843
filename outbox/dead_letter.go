package outbox

import (
	"errors"
	"time"
)

// DeadLetter is a message its consumer gave up on, as the dead-letter stream keeps it:
// an operator lists them and replays them once the cause is fixed.
type DeadLetter struct {
	Seq     uint64    // its sequence in the dead-letter stream, which names it for a replay
	Stream  string    // the stream the message was consumed from
	Subject string    // the subject it was published to, where a replay publishes it again
	MsgID   string    // the original message id (the task's MessageID)
	Reasons []string  // why each consumer gave up on it, the earliest first (one per dead-lettering)
	DeadAt  time.Time // when it was dead-lettered (the last time)
}

// DeadLetterFilter narrows a listing of dead letters.
type DeadLetterFilter struct {
	Stream string    // only those consumed from this stream; empty: every stream
	Since  time.Time // only those dead-lettered at or after it; zero: all
}

// Errors of the dead-letter operations.
var (
	// ErrNoDeadLetter is a replay of a sequence the dead-letter stream does not hold: never
	// dead-lettered, already replayed, or aged out.
	ErrNoDeadLetter = errors.New("no such dead letter")
	// ErrUnknownStream names a stream that has no dead letters kept.
	ErrUnknownStream = errors.New("unknown event stream")
)
