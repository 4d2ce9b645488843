package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/strategy"
)

// metricSources are the Stats funcs the operator listener's metrics read at each scrape.
type metricSources struct {
	Draws     func() strategy.Stats
	StockSync func() nats.StockSyncStats
	Guard     func() guard.Stats
	Outbox    func() outbox.Stats
	Consumers []*nats.Consumer
	// DrawLag is the draw writer's backlog; nil: not exported.
	DrawLag func() nats.Lag
}

// newRegistry returns the registry of every metric the node exports: Go's and the
// process's, then the domains' counters and gauges, one line each.
func newRegistry(src metricSources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	draws, stockSync := counters(src.Draws), counters(src.StockSync)
	reg.MustRegister(
		draws("bigmarket_draws_total", "Draws by outcome.", func(st strategy.Stats) int64 { return st.Blacklist }, "outcome", "blacklist"),
		draws("bigmarket_draws_total", "Draws by outcome.", func(st strategy.Stats) int64 { return st.Stocked }, "outcome", "stocked"),
		draws("bigmarket_draws_total", "Draws by outcome.", func(st strategy.Stats) int64 { return st.Luck }, "outcome", "luck"),
		draws("bigmarket_draws_total", "Draws by outcome.", func(st strategy.Stats) int64 { return st.Failed }, "outcome", "failed"),
		draws("bigmarket_award_stock_out_total", "Stock deductions that found the award exhausted.", func(st strategy.Stats) int64 { return st.StockOut }),
		draws("bigmarket_award_sold_out_hits_total", "Stock deductions answered by the in-process sold-out flag, without Redis.", func(st strategy.Stats) int64 { return st.SoldOutHits }),
		draws("bigmarket_award_stock_missing_total", "Stock deductions that found no stock in Redis (undersold).", func(st strategy.Stats) int64 { return st.StockMissing }),
		stockSync("bigmarket_stock_sync_published_total", "Stock sync messages published.", func(st nats.StockSyncStats) int64 { return st.Published }),
		stockSync("bigmarket_stock_sync_failed_total", "Stock sync publishes that failed (retried).", func(st nats.StockSyncStats) int64 { return st.Failed }),
		gauge("bigmarket_stock_sync_pending", "Awards whose latest grants are not yet stored in the stock log (waiting for a flush or in one not yet acked).", src.StockSync, func(st nats.StockSyncStats) float64 { return float64(st.Pending) }),
	)

	const rejected, rejectedHelp = "bigmarket_guard_rejected_total", "Guarded requests answered by the front line, by reason."
	front := counters(src.Guard)
	reg.MustRegister(
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.Degraded }, "reason", "degraded"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.LimitedLocal }, "reason", "limited_local"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.LimitedCluster }, "reason", "limited_cluster"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.Blacklisted }, "reason", "blacklisted"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.Timeouts }, "reason", "timeout"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.BreakerOpen }, "reason", "breaker_open"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.OutcomeUnknown }, "reason", "outcome_unknown"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.IPLimited }, "reason", "ip_limited"),
		front(rejected, rejectedHelp, func(st guard.Stats) int64 { return st.IPBlacklisted }, "reason", "ip_blacklisted"),
		front("bigmarket_guard_ip_excused_refusals_total", "Per-IP refusals not counted towards the IP blacklist: the IP's last call got a system answer.", func(st guard.Stats) int64 { return st.IPExcused }),
		front("bigmarket_guard_ip_blacklist_full_total", "IP blacklistings not made because the IP blacklist held limiter_max_users entries.", func(st guard.Stats) int64 { return st.IPBlacklistFull }),
		front("bigmarket_guard_excused_refusals_total", "Rate-limit refusals not counted towards the blacklist: the user's last call failed for the system's reasons.", func(st guard.Stats) int64 { return st.Excused }),
		front("bigmarket_guard_cluster_limit_errors_total", "Cluster limit calls that failed (the request was let through).", func(st guard.Stats) int64 { return st.ClusterErrors }),
		gauge("bigmarket_guard_blacklist_size", "Users blacklisted on this node.", src.Guard, func(st guard.Stats) float64 { return float64(st.BlacklistSize) }),
		gauge("bigmarket_guard_ip_blacklist_size", "Client IPs (IPv6: /64s) blacklisted on this node.", src.Guard, func(st guard.Stats) float64 { return float64(st.IPBlacklistSize) }),
		gauge("bigmarket_guard_breaker_open", "1 while the breaker is open, 0.5 half-open, 0 closed.", src.Guard, breakerLevel),
	)

	relay := counters(src.Outbox)
	reg.MustRegister(
		relay("bigmarket_outbox_published_total", "Tasks published and marked completed.", func(st outbox.Stats) int64 { return st.Published }),
		relay("bigmarket_outbox_failed_total", "Task publishes that failed (re-sent by the compensation job).", func(st outbox.Stats) int64 { return st.Failed }),
		relay("bigmarket_outbox_dropped_total", "Tasks that did not fit the relay queue (re-sent by the compensation job).", func(st outbox.Stats) int64 { return st.Dropped }),
		relay("bigmarket_outbox_resent_total", "Tasks claimed by the compensation job.", func(st outbox.Stats) int64 { return st.Resent }),
		gauge("bigmarket_outbox_queued", "Committed tasks waiting for the relay.", src.Outbox, func(st outbox.Stats) float64 { return float64(st.Queued) }),
	)
	if src.DrawLag != nil {
		reg.MustRegister(
			gauge("bigmarket_draw_writer_lag_events", "Draw events the draw writer has not applied to SQL yet.", src.DrawLag, func(l nats.Lag) float64 { return float64(l.Events) }),
			gauge("bigmarket_draw_writer_lag_seconds", "Age of the oldest draw event the draw writer has not applied yet.", src.DrawLag, func(l nats.Lag) float64 { return l.Seconds }),
		)
	}
	for _, c := range src.Consumers {
		events, topic := counters(c.Stats), c.Topic()
		reg.MustRegister(
			events("bigmarket_events_handled_total", "Events handled and acked.", func(st nats.ConsumerStats) int64 { return st.Handled }, "topic", topic),
			events("bigmarket_events_failed_total", "Event handler failures (redelivered or dead-lettered).", func(st nats.ConsumerStats) int64 { return st.Failed }, "topic", topic),
			events("bigmarket_events_dead_lettered_total", "Events copied to the dead-letter stream.", func(st nats.ConsumerStats) int64 { return st.DeadLettered }, "topic", topic),
		)
	}
	return reg
}

// counters returns a maker of counters read from stats at each scrape: get picks the
// counter's field, and labels are constant name, value pairs.
func counters[S any](stats func() S) func(name, help string, get func(S) int64, labels ...string) prometheus.Collector {
	return func(name, help string, get func(S) int64, labels ...string) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: constLabels(labels)},
			func() float64 { return float64(get(stats())) })
	}
}

// gauge returns a gauge read from stats at each scrape.
func gauge[S any](name, help string, stats func() S, get func(S) float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return get(stats()) })
}

func constLabels(pairs []string) prometheus.Labels {
	if len(pairs) == 0 {
		return nil
	}
	labels := prometheus.Labels{}
	for i := 0; i+1 < len(pairs); i += 2 {
		labels[pairs[i]] = pairs[i+1]
	}
	return labels
}

// breakerLevel is the breaker's state as a gauge: 1 open, 0.5 half-open, 0 closed.
func breakerLevel(st guard.Stats) float64 {
	switch st.BreakerState {
	case "open":
		return 1
	case "half-open":
		return 0.5
	}
	return 0
}
