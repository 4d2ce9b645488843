package app

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/strategy"
)

// metricSet lists the series a registry exports as "name{labels} help", sorted.
func metricSet(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var set []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			set = append(set, fmt.Sprintf("%s{%s} %s %s", f.GetName(), strings.Join(labels, ","), f.GetType(), f.GetHelp()))
		}
	}
	slices.Sort(set)
	return set
}

// TestRegistryNamesUnchanged checks the metrics the node exports, by name, labels, type
// and help, against the list the three register functions of serve.go exported before
// they became newRegistry, less the group commit's, which went with the SQL draw; Go's
// and the process's own series are left out.
func TestRegistryNamesUnchanged(t *testing.T) {
	consumers := []*nats.Consumer{
		nats.NewConsumer(nil, nats.EventOptions{}, "topic_a", nil, nil),
		nats.NewBatchConsumer(nil, nats.EventOptions{}, "topic_b", nil, nil),
	}
	reg := newRegistry(metricSources{
		Draws:     strategy.NewService(strategy.Options{}).Stats,
		StockSync: nats.NewStockSync(nil, nats.StockOptions{}, nil).Stats,
		Guard:     guard.New(guard.Options{Defaults: guard.DefaultSettings()}).Stats,
		Outbox:    outbox.NewRelay(outbox.Options{}).Stats,
		Consumers: consumers,
	})
	var got []string
	for _, s := range metricSet(t, reg) {
		if strings.HasPrefix(s, "bigmarket_") {
			got = append(got, s)
		}
	}
	want := []string{
		"bigmarket_award_sold_out_hits_total{} COUNTER Stock deductions answered by the in-process sold-out flag, without Redis.",
		"bigmarket_award_stock_missing_total{} COUNTER Stock deductions that found no stock in Redis (undersold).",
		"bigmarket_award_stock_out_total{} COUNTER Stock deductions that found the award exhausted.",
		"bigmarket_draws_total{outcome=blacklist} COUNTER Draws by outcome.",
		"bigmarket_draws_total{outcome=failed} COUNTER Draws by outcome.",
		"bigmarket_draws_total{outcome=luck} COUNTER Draws by outcome.",
		"bigmarket_draws_total{outcome=stocked} COUNTER Draws by outcome.",
		"bigmarket_events_dead_lettered_total{topic=topic_a} COUNTER Events copied to the dead-letter stream.",
		"bigmarket_events_dead_lettered_total{topic=topic_b} COUNTER Events copied to the dead-letter stream.",
		"bigmarket_events_failed_total{topic=topic_a} COUNTER Event handler failures (redelivered or dead-lettered).",
		"bigmarket_events_failed_total{topic=topic_b} COUNTER Event handler failures (redelivered or dead-lettered).",
		"bigmarket_events_handled_total{topic=topic_a} COUNTER Events handled and acked.",
		"bigmarket_events_handled_total{topic=topic_b} COUNTER Events handled and acked.",
		"bigmarket_guard_blacklist_size{} GAUGE Users blacklisted on this node.",
		"bigmarket_guard_breaker_open{} GAUGE 1 while the breaker is open, 0.5 half-open, 0 closed.",
		"bigmarket_guard_cluster_limit_errors_total{} COUNTER Cluster limit calls that failed (the request was let through).",
		"bigmarket_guard_excused_refusals_total{} COUNTER Rate-limit refusals not counted towards the blacklist: the user's last call failed for the system's reasons.",
		// The per-IP limit (issue 17).
		"bigmarket_guard_ip_blacklist_full_total{} COUNTER IP blacklistings not made because the IP blacklist held limiter_max_users entries.",
		"bigmarket_guard_ip_blacklist_size{} GAUGE Client IPs (IPv6: /64s) blacklisted on this node.",
		"bigmarket_guard_ip_excused_refusals_total{} COUNTER Per-IP refusals not counted towards the IP blacklist: the IP's last call got a system answer.",
		"bigmarket_guard_rejected_total{reason=blacklisted} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=breaker_open} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=degraded} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=ip_blacklisted} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=ip_limited} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=limited_cluster} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=limited_local} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=outcome_unknown} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_guard_rejected_total{reason=timeout} COUNTER Guarded requests answered by the front line, by reason.",
		"bigmarket_outbox_dropped_total{} COUNTER Tasks that did not fit the relay queue (re-sent by the compensation job).",
		"bigmarket_outbox_failed_total{} COUNTER Task publishes that failed (re-sent by the compensation job).",
		"bigmarket_outbox_published_total{} COUNTER Tasks published and marked completed.",
		"bigmarket_outbox_queued{} GAUGE Committed tasks waiting for the relay.",
		"bigmarket_outbox_resent_total{} COUNTER Tasks claimed by the compensation job.",
		"bigmarket_stock_sync_failed_total{} COUNTER Stock sync publishes that failed (retried).",
		"bigmarket_stock_sync_pending{} GAUGE Awards whose latest grants are not yet stored in the stock log (waiting for a flush or in one not yet acked).",
		"bigmarket_stock_sync_published_total{} COUNTER Stock sync messages published.",
	}
	if !slices.Equal(got, want) {
		t.Errorf("exported metrics changed:\n got %q\nwant %q", got, want)
	}
	for _, s := range metricSet(t, reg) {
		if strings.HasPrefix(s, "go_goroutines{") {
			return
		}
	}
	t.Error("no go_goroutines: Go's collector is not registered")
}
