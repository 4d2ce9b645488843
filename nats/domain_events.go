package nats

import (
	"context"
	"errors"
	"fmt"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
)

// permanent marks err as one redelivery cannot fix when is says so, so that the message
// is dead-lettered at once.
func permanent(err error, is func(error) bool) error {
	if err != nil && is(err) {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return err
}

// decode reads an event's outbox message, dead-lettering one that is not.
func decode[T any](e Event) (T, error) {
	m, err := outbox.Decode[T](e.Data)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("decode %s message %s: %w: %w", e.Topic, e.MsgID, ErrPermanent, err)
	}
	return m.Data, nil
}

// SendAwardHandler returns the BatchHandler of award.TopicSendAward: a fetched batch is
// distributed together, its credit trades grouped per user database.
func SendAwardHandler(s *award.Service) BatchHandler {
	return func(ctx context.Context, events []Event) []error {
		errs := make([]error, len(events))
		var (
			msgs []award.SendAward
			at   []int
		)
		for i, e := range events {
			m, err := decode[award.SendAward](e)
			if err != nil {
				errs[i] = err
				continue
			}
			msgs = append(msgs, m)
			at = append(at, i)
		}
		for j, err := range s.Distribute(ctx, msgs) {
			errs[at[j]] = permanent(err, award.Permanent)
		}
		return errs
	}
}

// SendRebateHandler returns the Handler of rebate.TopicSendRebate.
func SendRebateHandler(s *rebate.Service) Handler {
	return func(ctx context.Context, e Event) error {
		m, err := decode[rebate.SendRebate](e)
		if err != nil {
			return err
		}
		return permanent(s.Deliver(ctx, m), func(err error) bool {
			return errors.Is(err, rebate.ErrBadConfig) || errors.Is(err, activity.ErrSKUNotFound) ||
				errors.Is(err, activity.ErrActivityNotFound) || errors.Is(err, activity.ErrInvalidUserID) ||
				credit.IsPermanent(err)
		})
	}
}

// CreditAdjustSuccessHandler returns the Handler of credit.TopicCreditAdjustSuccess.
func CreditAdjustSuccessHandler(s *credit.Service) Handler {
	return func(ctx context.Context, e Event) error {
		m, err := decode[credit.AdjustSuccess](e)
		if err != nil {
			return err
		}
		return permanent(s.AdjustSucceeded(ctx, m), func(err error) bool {
			return credit.IsPermanent(err) || errors.Is(err, activity.ErrInvalidUserID)
		})
	}
}
