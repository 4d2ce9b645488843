package award

import (
	"context"
	"log/slog"

	"github.com/bigmarket/bigmarket/credit"
)

// DemoReceiver distributes external awards in demo mode when no webhook is configured: it
// logs each award at INFO, one line per delivery, and completes its record as a
// receiver's 2xx answer would. A first run thus shows the whole flow, draw to completed
// award, without a receiver and without an error per draw. Production never uses it:
// there an external award without a webhook is refused (ErrNoDistributor) and
// dead-lettered with the reason, never completed unseen.
type DemoReceiver struct {
	Logger *slog.Logger
}

var _ Distributor = DemoReceiver{}

// Prepare logs the award and returns the change that completes its record (no credit).
func (d DemoReceiver) Prepare(ctx context.Context, a Award, m SendAward) (credit.Change, error) {
	cfg := m.AwardConfig
	if cfg == "" {
		cfg = a.Config
	}
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	log.InfoContext(ctx, "demo receiver took an external award (no webhook configured)",
		"user_id", m.UserID, "order_id", m.OrderID, "award_id", a.ID, "award_key", a.Key, "award_config", cfg, "award_title", m.AwardTitle)
	return credit.Change{}, nil
}
