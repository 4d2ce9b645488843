package outbox

import "sync/atomic"

// defaultQueueSize is how many committed tasks a queue holds when NewQueue is given none.
const defaultQueueSize = 65536

// Queue holds the tasks whose transaction has committed until the relay publishes them.
// It is made first and handed to both of its ends at construction: the store whose
// transactions write tasks calls Committed, and the relay (Options.Queue) reads it. So
// neither end needs the other: the relay's store is that same task store.
type Queue struct {
	tasks   chan Task
	dropped atomic.Int64
}

// NewQueue returns a Queue of size tasks (size <= 0: 65,536). Beyond it a task is left
// to the relay's compensation job, so a slow broker never slows a commit.
func NewQueue(size int) *Queue {
	if size <= 0 {
		size = defaultQueueSize
	}
	return &Queue{tasks: make(chan Task, size)}
}

// Committed hands tasks whose transaction has committed to the relay. It never blocks:
// a task that does not fit stays in create for the compensation job, and is counted as
// dropped.
func (q *Queue) Committed(tasks []Task) {
	for _, t := range tasks {
		select {
		case q.tasks <- t:
		default:
			q.dropped.Add(1)
		}
	}
}
