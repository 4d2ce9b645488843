package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/bigmarket/bigmarket/outbox"
)

// deadLetters lists and replays the messages consumers gave up on: the broker's
// dead-letter stream.
type deadLetters interface {
	List(ctx context.Context, f outbox.DeadLetterFilter) ([]outbox.DeadLetter, error)
	Replay(ctx context.Context, seq uint64) (outbox.DeadLetter, error)
	ReplayAll(ctx context.Context, stream string) ([]outbox.DeadLetter, error)
}

// deadLetterView is a dead letter on the wire; deadAt is in Unix milliseconds, as the
// other times of the API.
type deadLetterView struct {
	Seq     uint64   `json:"seq"`
	Stream  string   `json:"stream"`
	Subject string   `json:"subject"`
	MsgID   string   `json:"msgId"`
	Reasons []string `json:"reasons"`
	DeadAt  int64    `json:"deadAt"`
}

func deadLetterViews(dls []outbox.DeadLetter) []deadLetterView {
	out := make([]deadLetterView, len(dls))
	for i, dl := range dls {
		out[i] = deadLetterView{Seq: dl.Seq, Stream: dl.Stream, Subject: dl.Subject, MsgID: dl.MsgID, Reasons: dl.Reasons, DeadAt: millis(dl.DeadAt)}
	}
	return out
}

// listDeadLetters answers GET /api/v1/admin/dlq?stream=&since= with the dead letters, the
// oldest first. since is a duration back from now ("24h") or an RFC 3339 time; stream a
// stream name; both optional, anything else 0002.
func (s *Server) listDeadLetters(r *http.Request) (any, error) {
	q := r.URL.Query()
	f := outbox.DeadLetterFilter{Stream: q.Get("stream")}
	if raw := q.Get("since"); raw != "" {
		if d, err := time.ParseDuration(raw); err == nil && d > 0 {
			now := time.Now
			if s.opts.Now != nil {
				now = s.opts.Now
			}
			f.Since = now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, raw); err == nil {
			f.Since = t
		} else {
			return nil, badParam(http.StatusOK, "since must be a positive duration (24h) or an RFC 3339 time")
		}
	}
	dls, err := s.opts.DeadLetters.List(r.Context(), f)
	if err != nil {
		return nil, err
	}
	return deadLetterViews(dls), nil
}

// replayRequest names one dead letter by its sequence, or all of them (of a stream).
type replayRequest struct {
	Seq    ID     `json:"seq"`
	All    bool   `json:"all"`
	Stream string `json:"stream"`
}

// replayDeadLetters answers POST /api/v1/admin/dlq/replay {seq} or {all: true, stream}:
// each dead letter is published again to its subject and removed from the dead-letter
// stream; the answer lists those replayed. An unknown seq (replayed already, say) is 0002.
func (s *Server) replayDeadLetters(r *http.Request) (any, error) {
	var req replayRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	switch {
	case req.All && req.Seq != 0:
		return nil, badParam(http.StatusOK, "name either seq or all, not both")
	case req.All:
		dls, err := s.opts.DeadLetters.ReplayAll(r.Context(), req.Stream)
		if err != nil {
			return nil, err
		}
		return deadLetterViews(dls), nil
	case req.Stream != "":
		return nil, badParam(http.StatusOK, "stream goes with all: true")
	case req.Seq > 0:
		dl, err := s.opts.DeadLetters.Replay(r.Context(), uint64(req.Seq))
		if err != nil {
			return nil, err
		}
		return deadLetterViews([]outbox.DeadLetter{dl}), nil
	default:
		return nil, badParam(http.StatusOK, "seq (a positive integer) or all: true is required")
	}
}
