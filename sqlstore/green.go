package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
)

// The green channel's reads: what the asynchronous consumers will credit a user but have
// not yet, read from the rows the events were written with, so that a credit query can
// apply it first under the same idempotency keys.

// PendingAwards implements award.Pending: the send_award messages of the user's award
// records still in state create, oldest first, each as its task carries it (so with the
// rule's value the consumer would use). A record without its task is left out.
func (s *UserStore) PendingAwards(ctx context.Context, userID string) ([]award.SendAward, error) {
	r := s.router.Route(userID)
	var msgs []award.SendAward
	err := queryEach(ctx, s.dbs[r.DB].SQL, "SELECT t.message FROM user_award_record"+r.Suffix+" r"+
		" JOIN task t ON t.message_id = r.order_id AND t.topic = ? AND t.user_id = r.user_id"+
		" WHERE r.user_id = ? AND r.award_state = ? ORDER BY r.id",
		[]any{award.TopicSendAward, userID, string(award.StateCreate)}, func(rows *sql.Rows) error {
			var body []byte
			if err := rows.Scan(&body); err != nil {
				return err
			}
			m, err := outbox.Decode[award.SendAward](body)
			if err != nil {
				return fmt.Errorf("decode send_award task: %w", err)
			}
			msgs = append(msgs, m.Data)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("pending awards of %s: %w", userID, err)
	}
	return msgs, nil
}

// PendingCreditRebates implements rebate.Pending: the send_rebate messages of the user's
// credit rebate orders that no credit order has applied yet (none carries the rebate's
// biz_id as its business number), oldest first.
func (s *UserStore) PendingCreditRebates(ctx context.Context, userID string) ([]rebate.SendRebate, error) {
	r := s.router.Route(userID)
	var msgs []rebate.SendRebate
	err := queryEach(ctx, s.dbs[r.DB].SQL, "SELECT o.rebate_desc, o.rebate_config, o.biz_id FROM user_behavior_rebate_order"+r.Suffix+" o"+
		" WHERE o.user_id = ? AND o.rebate_type = ? AND NOT EXISTS"+
		" (SELECT 1 FROM user_credit_order"+r.Suffix+" c WHERE c.out_business_no = o.biz_id) ORDER BY o.id",
		[]any{userID, string(rebate.TypeIntegral)}, func(rows *sql.Rows) error {
			m := rebate.SendRebate{UserID: userID, RebateType: rebate.TypeIntegral}
			if err := rows.Scan(&m.RebateDesc, &m.RebateConfig, &m.BizID); err != nil {
				return err
			}
			msgs = append(msgs, m)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("pending credit rebates of %s: %w", userID, err)
	}
	return msgs, nil
}
