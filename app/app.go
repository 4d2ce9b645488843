package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/internal/tick"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/raffle"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/recovery"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/strategy"
	"github.com/bigmarket/bigmarket/web"
	"github.com/bigmarket/bigmarket/webhook"
)

// App is one serving process: it owns the backends, the stores and services built on
// them, the background jobs and the HTTP servers. New builds it (backends, then
// stores, services, event consumers, the front line and the API, each from what was built
// before it); Run starts the jobs and serves until its context ends; Close stops it in
// the reverse order.
type App struct {
	cfg Config
	log *slog.Logger
	b   *Backends

	stockOpts nats.StockOptions
	eventOpts nats.EventOptions
	drawOpts  nats.EventOptions // the draw stream's

	configs       *sqlstore.ConfigStore
	activityStore *sqlstore.ActivityStore
	users         *sqlstore.UserStore
	publisher     *nats.Publisher
	relay         *outbox.Relay
	stock         *redis.Stock
	skuStock      *redis.SKUStock
	stockSync     *nats.StockSync
	armoryBus     *nats.ArmoryBus
	recovered     *recovery.Service

	strategies *strategy.Service
	activities *activity.Service
	awards     *award.Service
	credits    *credit.Service
	rebates    *rebate.Service
	redPackets *redpacket.Service
	rains      *rain.Service
	rainQuota  *nats.RainQuota
	raffles    *raffle.Service
	gate       *gate.Gate
	guardKV    *nats.GuardKV
	front      *guard.Guard

	consumers []*nats.Consumer
	// drawQuota and drawWriter are the draw's hot quota and the consumer that writes its
	// draws to SQL.
	drawQuota  *redis.DrawQuota
	drawWriter *nats.Consumer
	api        *httpapi.Server

	// background is the jobs' context: it outlives the serve context so that Close can
	// flush the stock sync before the jobs stop.
	background     context.Context
	stopBackground context.CancelFunc
	jobs           sync.WaitGroup
	stopOps        func()
}

// New opens the backends and builds everything on them; nothing is served yet. On
// error what was built is closed.
func New(ctx context.Context, cfg Config, log *slog.Logger) (n *App, err error) {
	if err := cfg.SaveAdminToken(); err != nil {
		return nil, err
	}
	// built is what the deferred Close closes: the error returns below set n to nil
	// before the defer runs.
	built := &App{cfg: cfg, log: log, b: &Backends{}}
	n = built
	n.background, n.stopBackground = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			built.Close()
			n = nil
		}
	}()
	if err := n.openBackends(ctx); err != nil {
		return nil, err
	}
	if err := n.buildStores(); err != nil {
		return nil, err
	}
	// The SKU stock of the open activities is armed before anything is served, so that a
	// recharge right after a start never meets a missing counter (0009 until rebuilt).
	if err := armOpenActivities(ctx, n.activityStore, n.activities, log); err != nil {
		return nil, err
	}
	n.buildServices()
	if err := n.buildRain(ctx); err != nil {
		return nil, err
	}
	n.buildConsumers()
	if err := n.buildFront(ctx); err != nil {
		return nil, err
	}
	n.buildAPI()
	return n, nil
}

// openBackends opens SQL, Redis and NATS and makes sure the streams exist.
func (n *App) openBackends(ctx context.Context) error {
	cfg := n.cfg
	if err := OpenSQL(ctx, cfg, n.b, false, true); err != nil {
		return err
	}
	if err := OpenRedis(ctx, cfg, n.b, n.log); err != nil {
		return err
	}
	if err := OpenNATS(cfg, n.b, n.log); err != nil {
		return err
	}
	n.stockOpts = nats.StockOptions{Prefix: cfg.NATSPrefix, Replicas: cfg.NATSReplicas, FlushInterval: cfg.StockSyncInterval}
	if err := n.natsSetup(ctx, func(ctx context.Context) error { return nats.EnsureStockStream(ctx, n.b.JS, n.stockOpts) }); err != nil {
		return fmt.Errorf("ensure stock stream: %w", err)
	}
	n.eventOpts = nats.EventOptions{Prefix: cfg.NATSPrefix, Replicas: cfg.NATSReplicas,
		MaxDeliver: cfg.EventMaxDeliver, Backoff: cfg.eventBackoff, AckWait: cfg.EventAckWait}
	if err := n.natsSetup(ctx, func(ctx context.Context) error { return nats.EnsureEventStreams(ctx, n.b.JS, n.eventOpts) }); err != nil {
		return fmt.Errorf("ensure event streams: %w", err)
	}
	n.drawOpts = nats.DrawEventOptions(n.eventOpts)
	if err := n.natsSetup(ctx, func(ctx context.Context) error { return nats.EnsureDrawStream(ctx, n.b.JS, n.drawOpts) }); err != nil {
		return fmt.Errorf("ensure draw stream: %w", err)
	}
	return nil
}

// natsSetupTry bounds one try of a stream or bucket creation at start, and natsSetupTimeout
// all its tries. On a NATS cluster, nodes starting together create the same replicated
// stream at once, and the broker (2.15) can leave all but one of those requests
// unanswered although the stream is made; a try that times out is sent again, and finds
// the stream there. (A single create of a replicated stream also waits for its group to
// elect a leader: seconds on a loaded machine.)
const (
	natsSetupTry     = 3 * time.Second
	natsSetupTimeout = 60 * time.Second
)

// redPacketEmptyMemo is how many packets found empty each node remembers (redis.RedPackets.EmptyMemo):
// a packet's memo holds its grabbers and eligible users, and answers for 5 s at a time.
const redPacketEmptyMemo = 1024

// natsSetup runs create, an idempotent creation of streams or buckets, until it succeeds,
// fails other than by a timeout, or natsSetupTimeout has passed.
func (n *App) natsSetup(ctx context.Context, create func(context.Context) error) error {
	deadline := time.Now().Add(natsSetupTimeout)
	for {
		tryCtx, cancel := context.WithTimeout(ctx, natsSetupTry)
		err := create(tryCtx)
		cancel()
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsgo.ErrTimeout)
		if err == nil || !timedOut || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		n.log.Warn("creating a NATS stream or bucket timed out; trying again", "err", err)
	}
}

// buildStores builds the stores and adapters and the two stock services on them.
func (n *App) buildStores() error {
	cfg, b, log := n.cfg, n.b, n.log
	router, err := sqlstore.NewRouter(cfg.DBCount, cfg.TBCount)
	if err != nil {
		return err
	}
	n.configs = sqlstore.NewConfigStore(b.ConfigDB)
	n.activityStore = sqlstore.NewActivityStore(b.ConfigDB, cfg.location)
	// The outbox queue comes first: the user store puts the tasks it commits in it and
	// the relay, whose task store is the user store, publishes them from it.
	committed := outbox.NewQueue(0)
	n.users = sqlstore.NewUserStoreWith(b.UserDBs, router, sqlstore.UserOptions{
		Committed: committed.Committed,
	})
	n.publisher = nats.NewPublisher(b.JS, n.eventOpts)
	n.relay = outbox.NewRelay(outbox.Options{Publisher: n.publisher, Store: n.users, Queue: committed, Logger: log,
		Grace: cfg.OutboxGrace, Every: cfg.OutboxEvery})
	n.stock = redis.NewStock(b.Redis, cfg.RedisPrefix).Fence(b.RedisFence).WaitReplicas(b.RedisWait)
	// A draw's stock deduction shares the round trips of concurrent draws.
	n.stock.DeductVia(autoPipelined(b.Redis, log, "award stock deductions"))
	n.skuStock = redis.NewSKUStock(b.Redis, cfg.RedisPrefix).Fence(b.RedisFence).WaitReplicas(b.RedisWait)
	n.stockSync = nats.NewStockSync(b.JS, n.stockOpts, log)
	n.armoryBus = nats.NewArmoryBus(b.NC, cfg.NATSPrefix, log)
	recoveryOpts := recovery.Options{
		Configs: struct {
			*sqlstore.ConfigStore
			*sqlstore.ActivityStore
		}{n.configs, n.activityStore},
		Grants:   n.users,
		Log:      nats.NewStockLog(b.JS, n.stockOpts),
		Awards:   n.stock,
		SKUStock: n.skuStock,
		// Draws write their award records behind their answers: a rebuild waits for the
		// draws in flight (a draw publishes within its lease, which the draw recover grace
		// exceeds) and then for the draw writer, before it counts records.
		Grace:  max(cfg.RecoveryGrace, cfg.DrawRecoverGrace),
		Drain:  nats.NewEventDrain(b.JS, n.drawOpts, nats.TopicDraw).WaitApplied,
		Logger: log,
	}
	n.recovered = recovery.NewService(recoveryOpts)
	n.strategies = strategy.NewService(strategy.Options{
		Configs:           n.configs,
		Stock:             n.stock,
		Sink:              n.stockSync,
		Recovery:          n.recovered,
		Logger:            log,
		DefaultStockTTL:   cfg.DefaultStockTTL,
		ImplicitLuckAward: cfg.ImplicitLuckAward,
		Announcer:         n.armoryBus,
		StockStore:        n.configs,

		// The per-strategy overrides (none: no fallback) of implicit_luck_award_by_strategy.
		ImplicitLuckAwardFor: cfg.implicitLuckAwardFor,
	})
	activityOpts := activity.Options{
		Configs: n.activityStore, Users: n.users, SKUStock: n.skuStock, Recovery: n.recovered,
		Location: cfg.location, Logger: log,
		StockZero:  nats.NewSKUStockZero(n.publisher),
		StockStore: n.activityStore,
		Announcer:  n.armoryBus,
	}
	// Concurrent draws share Redis round trips through an auto-pipeliner, as grabs do.
	var drawRedis goredis.Cmdable = b.Redis
	if ap, err := b.Redis.AutoPipeline(); err == nil {
		drawRedis = ap
	} else {
		log.Warn("draws without auto-pipelining", "err", err)
	}
	_, cluster := b.Redis.(*goredis.ClusterClient)
	n.drawQuota = redis.NewDrawQuota(drawRedis, cfg.RedisPrefix).OnCluster(cluster).Fence(b.RedisFence).WaitReplicas(b.RedisWait)
	activityOpts.Hot = n.drawQuota
	n.activities = activity.NewService(activityOpts)
	return nil
}

// buildServices builds the award, credit, rebate, red packet and raffle services.
func (n *App) buildServices() {
	cfg, b, log := n.cfg, n.b, n.log
	awardConfigs := sqlstore.NewAwardConfigs(b.ConfigDB)
	var external award.Distributor
	switch {
	case cfg.WebhookURL != "":
		external = webhook.New(webhook.Options{URL: cfg.WebhookURL, Secret: cfg.WebhookSecret})
	case cfg.Mode == ModeDemo:
		// A first run completes its external awards in the log rather than dead-letter each.
		external = award.DemoReceiver{Logger: log}
	default:
		log.Warn("no BIGMARKET_WEBHOOK_URL: external awards are refused and dead-lettered")
	}
	n.awards = award.NewService(award.Options{Configs: awardConfigs, Pending: n.users, Credits: n.users, Fallback: external})
	n.credits = credit.NewService(n.users, n.activities, nil)
	n.rebates = rebate.NewService(rebate.Options{Configs: awardConfigs, Store: n.users, Pending: n.users, Recharge: n.activities.Recharge,
		Credits: n.users, Location: cfg.location})
	// Concurrent grabs share Redis round trips through an auto-pipeliner: under a crowd
	// each write and read carries many scripts instead of one. Grabs of a packet this node
	// found empty answer from a memo of its last 1024 such packets, without Redis.
	var grabRedis goredis.Cmdable = b.Redis
	if ap, err := b.Redis.AutoPipeline(); err == nil {
		grabRedis = ap
	} else {
		log.Warn("red packets without auto-pipelining", "err", err)
	}
	n.redPackets = redpacket.NewService(redpacket.Options{
		Store: n.users, Hot: redis.NewRedPackets(grabRedis, cfg.RedisPrefix).Fence(b.RedisFence).WaitReplicas(b.RedisWait).
			EmptyMemo(redPacketEmptyMemo),
		Events: nats.NewGrabEvents(n.publisher), Logger: log,
		// A rebuild of a lost packet waits for the grab consumer (buildConsumers) to
		// apply every grab event already published.
		Drain:        nats.NewEventDrain(b.JS, n.eventOpts, redpacket.TopicGrab),
		Limits:       redpacket.Limits{MaxCount: cfg.RedPacketMaxCount, MaxAmount: cfg.redPacketMaxAmount},
		RecoverGrace: cfg.RedPacketRecoverGrace, PublishTimeout: cfg.RedPacketPublishTimeout,
	})
	// Fenced as the hot quota whose slot markers and fences it reads (redis.Wins.Fence).
	wins := redis.NewWins(b.Redis, cfg.RedisPrefix, 0).Fence(b.RedisFence)
	if n.drawQuota != nil {
		// Flash draws write their award records behind their answers: a one-win set lost
		// with Redis (or rolled back by a failover, fenced) is rebuilt only once the
		// restore has waited for the draw writer.
		wins.RebuildAfter(n.drawQuota)
	}
	n.gate = gate.New(gate.Options{
		Store: sqlstore.NewSettingStore(b.ConfigDB), Announcer: n.armoryBus,
		Activities: n.activities, Strategies: n.strategies, Records: n.users,
		Wins: wins, Nonces: redis.NewNonces(b.Redis, cfg.RedisPrefix),
		Secret: cfg.drawPathSecret, Logger: log,
	})
	n.raffles = raffle.NewService(raffle.Options{
		Activities: n.activities, Strategies: n.strategies, Logger: log, Gate: n.gate,
		Flash: raffle.Flash{
			Activities: n.activities, Hot: n.drawQuota,
			Events: nats.NewDrawEvents(nats.NewPublisher(b.JS, n.drawOpts)),
			// The draw writer (buildConsumers) is what a restore after a Redis loss waits for.
			Drain:          nats.NewEventDrain(b.JS, n.drawOpts, nats.TopicDraw),
			PublishTimeout: cfg.DrawPublishTimeout,
			RecoverGrace:   cfg.DrawRecoverGrace,
			BeforePublish:  cfg.faults.hook(faultBeforePublish, log),
			Writer:         n.users,
			Rejected:       drawRejected,
		},
	})
}

// buildRain builds red packet rain: its hot state, its quota agent fed by the quota bucket
// (every live session's version is in the agent before anything is served), and the
// service.
func (n *App) buildRain(ctx context.Context) error {
	cfg, b, log := n.cfg, n.b, n.log
	agent := &rain.Agent{}
	var bus *nats.RainQuota
	err := n.natsSetup(ctx, func(ctx context.Context) (err error) {
		bus, err = nats.OpenRainQuota(ctx, b.JS, cfg.NATSPrefix, cfg.NATSReplicas, cfg.NodeID, agent, log)
		return err
	})
	if err != nil {
		return err
	}
	n.rainQuota = bus
	store := sqlstore.NewRainStore(b.ConfigDB, n.users)
	n.rains = rain.NewService(rain.Options{
		Store: store, Hot: redis.NewRain(autoPipelined(b.Redis, log, "rain taps"), cfg.RedisPrefix).Fence(b.RedisFence).WaitReplicas(b.RedisWait),
		Events: nats.NewWinEvents(n.publisher),
		// A rebuild of a session Redis lost waits for the win consumer (buildConsumers) to
		// apply every win event already published.
		Drain: nats.NewEventDrain(b.JS, n.eventOpts, rain.TopicWin),
		Bus:   bus, Agent: agent,
		Reserver: n.activities, SKUs: reservedGrants{n.activities}, Awards: store,
		PublishTimeout: cfg.RainPublishTimeout, RecoverGrace: cfg.RainRecoverGrace,
		Logger: log,
	})
	wait, err := bus.Watch(n.background)
	if err != nil {
		return err
	}
	n.jobs.Go(wait)
	return nil
}

// reservedGrants gives rain's SKU wins their draws through the activity service, and
// tells the rain service which refusals no retry can change (an unknown SKU or activity, a
// bad id), so that the consumer dead-letters such a win instead of retrying it forever.
type reservedGrants struct{ a *activity.Service }

func (g reservedGrants) GrantReserved(ctx context.Context, userID string, sku int64, outBusinessNo string) error {
	err := g.a.GrantReserved(ctx, userID, sku, outBusinessNo)
	for _, permanent := range []error{activity.ErrSKUNotFound, activity.ErrActivityNotFound, activity.ErrInvalidUserID, activity.ErrInvalidBusinessNo} {
		if errors.Is(err, permanent) {
			return fmt.Errorf("%w: %w", rain.ErrInvalid, err)
		}
	}
	return err
}

// buildConsumers builds the event consumers.
func (n *App) buildConsumers() {
	cfg, js, log := n.cfg, n.b.JS, n.log
	distribute := nats.SendAwardHandler(n.awards)
	if pause := cfg.faults.hook(faultAfterDistribute, log); pause != nil {
		inner := distribute
		distribute = func(ctx context.Context, events []nats.Event) []error {
			errs := inner(ctx, events)
			pause(context.WithoutCancel(ctx)) // a stalled process: past the handler's deadline too
			return errs
		}
	}
	n.consumers = []*nats.Consumer{
		nats.NewConsumer(js, n.eventOpts, nats.TopicSKUStockZero, nats.SKUStockZeroHandler(n.activityStore), log),
		nats.NewBatchConsumer(js, n.eventOpts, award.TopicSendAward, distribute, log),
		nats.NewConsumer(js, n.eventOpts, rebate.TopicSendRebate, nats.SendRebateHandler(n.rebates), log),
		nats.NewConsumer(js, n.eventOpts, credit.TopicCreditAdjustSuccess, nats.CreditAdjustSuccessHandler(n.credits), log),
		nats.NewBatchConsumer(js, n.eventOpts, redpacket.TopicGrab, nats.GrabHandler(n.redPackets), log),
		nats.NewBatchConsumer(js, n.eventOpts, rain.TopicWin, nats.WinHandler(n.rains), log),
	}
	// The writer writes through the raffle service, which forgets the credit wins it
	// wrote from the users' unwritten credit wins.
	write := nats.DrawHandler(n.raffles, drawRejected)
	if pause := cfg.faults.hook(faultAfterDrawWrite, log); pause != nil {
		inner := write
		write = func(ctx context.Context, events []nats.Event) []error {
			errs := inner(ctx, events)
			pause(context.WithoutCancel(ctx)) // a stalled process: past the handler's deadline too
			return errs
		}
	}
	n.drawWriter = nats.NewBatchConsumer(js, n.drawOpts, nats.TopicDraw, write, log)
	n.consumers = append([]*nats.Consumer{n.drawWriter}, n.consumers...)
}

// drawRejected tells a draw event the database refuses for good.
func drawRejected(err error) bool { return errors.Is(err, sqlstore.ErrDrawRejected) }

// buildFront opens the shared guard settings and builds the front line; the settings and
// blacklist are applied before it returns, so before the first request is served.
func (n *App) buildFront(ctx context.Context) error {
	cfg := n.cfg
	var guardKV *nats.GuardKV
	err := n.natsSetup(ctx, func(ctx context.Context) (err error) {
		guardKV, err = nats.OpenGuardKV(ctx, n.b.JS, cfg.NATSPrefix, cfg.NATSReplicas, n.log)
		return err
	})
	if err != nil {
		return err
	}
	n.guardKV = guardKV
	n.front = guard.New(guard.Options{
		Defaults: cfg.guard, Breaker: cfg.breaker(), Cluster: redis.NewRateLimiter(autoPipelined(n.b.Redis, n.log, "rate limits"), cfg.RedisPrefix),
		Blacklist: guardKV, IPBlacklist: guardKV, IsFailure: httpapi.IsSystemFailure, MaxUsers: cfg.LimiterMaxUsers,
		MaxIPs: cfg.LimiterMaxUsers, Logger: n.log,
		CommitTimeout: cfg.DrawCommitTimeout,
	})
	waitGuard, err := guardKV.Watch(n.background, n.front)
	if err != nil {
		return err
	}
	n.jobs.Go(waitGuard)
	return nil
}

// buildAPI builds the HTTP API and its metrics.
func (n *App) buildAPI() {
	cfg := n.cfg
	src := metricSources{Draws: n.strategies.Stats, StockSync: n.stockSync.Stats,
		Guard: n.front.Stats, Outbox: n.relay.Stats, Consumers: n.consumers}
	src.DrawLag = func() nats.Lag {
		ctx, cancel := context.WithTimeout(n.background, 2*time.Second)
		defer cancel()
		lag, err := n.drawWriter.Lag(ctx)
		if err != nil {
			n.log.Warn("draw writer lag", "err", err)
		}
		return lag
	}
	registry := newRegistry(src)
	deadLetters := nats.NewDeadLetters(n.b.JS, n.eventOpts, n.log)
	var events []*nats.Consumer // the consumers' backlog of the console: the writer has its own
	for _, c := range n.consumers {
		if c != n.drawWriter {
			events = append(events, c)
		}
	}
	n.api = httpapi.New(httpapi.Options{
		Strategies:         n.strategies,
		Activities:         n.activities,
		AwardRecords:       n.users,
		Raffles:            n.raffles,
		Gate:               n.gate,
		Credits:            n.credits,
		Rebates:            n.rebates,
		RedPackets:         n.redPackets,
		Rains:              n.rains,
		CreditSettlers:     n.creditSettlers(),
		Stock:              stockAdders{n.strategies, n.activities},
		DeadLetters:        deadLetters,
		AppTokens:          cfg.appTokens,
		AdminToken:         cfg.AdminToken,
		PlainUserEndpoints: cfg.PlainUserEndpoints == "on",
		JWTSecret:          []byte(cfg.JWTSecret),
		Guard:              n.front,
		GuardedRoutes:      cfg.GuardedEndpoints,
		TrustedProxies:     cfg.proxies,
		DCC:                n.guardKV,
		ArmoryNeedsAdmin:   cfg.Mode == ModeProduction,
		Ready:              n.b.Ready,
		Logger:             n.log,
		Registry:           registry,
		MaxBodyBytes:       cfg.MaxBodyBytes,
		Web:                web.New(web.Options{EmbedOrigins: cfg.WebEmbedOrigins}),
		DemoTokens:         cfg.Mode == ModeDemo,
		Console:            console{n},
		EmbedOrigins:       cfg.WebEmbedOrigins,
		NodeID:             cfg.NodeID,
		Gauges: gauges{activities: n.activityStore, configs: n.configs, users: n.users, strategies: n.strategies,
			stock: n.stock, skuStock: n.skuStock, writer: n.drawWriter, consumers: events,
			deadLetters: deadLetters, log: n.log},
	})
}

// creditSettlers is the credit green channel, in order: first the users' rain wins and
// the credit wins the draw writer has not written yet are written, so that the award
// settler, which reads SQL, credits them with the rest.
func (n *App) creditSettlers() []httpapi.Settler {
	return []httpapi.Settler{n.rains, raffle.CreditWins{S: n.raffles}, n.awards, n.rebates}
}

// startJobs starts the background jobs: the stock sync and its consumer, the event
// consumers, the outbox relay, the armory listener, the red packet sweep and the stock
// reconcile.
func (n *App) startJobs() {
	cfg, log := n.cfg, n.log
	run := func(name string, job func(context.Context) error) {
		n.jobs.Go(func() {
			if err := job(n.background); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("background job stopped", "job", name, "err", err)
			}
		})
	}
	run("stock-sync", n.stockSync.Run)
	run("stock-sync-consumer", nats.NewStockSyncConsumer(n.b.JS, n.stockOpts, n.configs, log).Run)
	creditLate := cfg.faults.hook(faultCreditConsumers, log)
	writerLate := cfg.faults.hook(faultDrawWriter, log)
	for _, c := range n.consumers {
		job := c.Run
		late := creditLate
		if c == n.drawWriter {
			late = writerLate
		} else if c.Topic() != award.TopicSendAward && c.Topic() != rebate.TopicSendRebate {
			late = nil
		}
		if late != nil {
			job = func(ctx context.Context) error {
				late(ctx)
				return c.Run(ctx)
			}
		}
		run(c.Topic()+"-consumer", job)
	}
	run("outbox-relay", n.relay.Run)
	run("armory-listener", func(ctx context.Context) error {
		return n.armoryBus.Listen(ctx, n.strategies.Reload, n.activities.StockAdded)
	})
	run("strategy-refresh", func(ctx context.Context) error {
		return n.strategies.RefreshEvery(ctx, cfg.StrategyRefreshEvery)
	})
	run("settings-listener", func(ctx context.Context) error {
		return n.armoryBus.ListenSettings(ctx, n.gate.Forget)
	})
	run("red-packet-sweep", func(ctx context.Context) error {
		return n.redPackets.SweepLeased(ctx, redis.NewLeases(n.b.Redis, cfg.RedisPrefix), cfg.RedPacketSweepEvery)
	})
	run("rain-sweep", func(ctx context.Context) error {
		return n.rains.SweepLeased(ctx, redis.NewLeases(n.b.Redis, cfg.RedisPrefix), cfg.RainSweepEvery)
	})
	run("rain-refresh", func(ctx context.Context) error {
		return n.rains.RefreshEvery(ctx, cfg.RainRefreshEvery)
	})
	run("draw-sweep", func(ctx context.Context) error {
		return n.raffles.SweepPendingLeased(ctx, redis.NewLeases(n.b.Redis, cfg.RedisPrefix), cfg.DrawSweepEvery)
	})
	run("stock-reconcile", func(ctx context.Context) error {
		return tick.Every(ctx, cfg.StockReconcileEvery, func(ctx context.Context) {
			n.strategies.ReconcileStock(ctx, n.stock, n.configs)
			n.activities.ReconcileSKUStock(ctx, n.skuStock, n.activityStore)
		})
	})
}

// Run starts the jobs, then serves the API (and the operator listener) until ctx ends,
// and returns once the API server has stopped accepting and finished its requests (at
// most ShutdownTimeout). Close stops the rest.
func (n *App) Run(ctx context.Context) error {
	cfg, log := n.cfg, n.log
	n.startJobs()
	// The draw loads hot quotas from SQL only once the draw writer has applied every
	// earlier draw; on a fresh (or emptied) Redis that is waited for here, so the first
	// draws are not answered 0009. A failure is logged: draws then answer 0009 until a
	// restore succeeds.
	if err := n.raffles.PrepareFlash(ctx); err != nil {
		log.Warn("hot quotas not yet loadable; draws answer 0009 until they are", "err", err)
	}
	srv := &http.Server{
		Handler:           n.api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	log.Info("bigmarket serving", "addr", ln.Addr().String(), "mode", cfg.Mode)
	if cfg.adminTokenPath != "" {
		log.Info("demo admin token kept in the data directory: `bigmarket admin-token` prints it (set BIGMARKET_ADMIN_TOKEN to choose one)", "file", cfg.adminTokenPath)
	}
	if cfg.OpsAddr != "" {
		if n.stopOps, err = serveOps(cfg.OpsAddr, n.api.Operator(), log); err != nil {
			ln.Close()
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		err = srv.Shutdown(shutdownCtx)
		cancel()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops what Run left running, in order: flush the stock sync (grants of the
// requests just finished reach the stock log), stop the jobs and consumers and wait for
// them, stop the operator listener, wait for the stock rebuilds in flight, and close the
// backends.
func (n *App) Close() {
	if n.stockSync != nil {
		flushCtx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		if err := n.stockSync.Close(flushCtx); err != nil {
			n.log.Error("final stock sync flush", "err", err)
		}
		cancel()
	}
	n.stopBackground()
	n.jobs.Wait()
	if n.stopOps != nil {
		n.stopOps()
	}
	if n.recovered != nil {
		n.recovered.Wait()
	}
	n.b.Close()
	n.log.Info("stopped")
}

// Serve runs an App until ctx ends, then shuts it down in order: stop accepting, finish
// requests, flush the stock sync, stop the jobs and consumers, close the backends.
func Serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	n, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Run(ctx)
}

// armOpenActivities preheats the SKU stock of every open activity, as the activity
// armory does; counters already in Redis (another node's, or this one's before a restart)
// are kept.
func armOpenActivities(ctx context.Context, store *sqlstore.ActivityStore, activities *activity.Service, log *slog.Logger) error {
	ids, err := store.OpenActivityIDs(ctx)
	if err != nil {
		return fmt.Errorf("arm sku stock at start: %w", err)
	}
	armed, err := activities.ArmOpen(ctx, ids)
	if err != nil {
		return fmt.Errorf("arm sku stock at start: %w", err)
	}
	log.Info("sku stock armed", "activities", armed)
	return nil
}

// stockAdders tops up award stock through the strategy service and SKU stock through the
// activity service (admin/stock/add).
type stockAdders struct {
	awards *strategy.Service
	skus   *activity.Service
}

func (a stockAdders) AddStock(ctx context.Context, ref strategy.AwardRef, units int64) (int64, error) {
	return a.awards.AddStock(ctx, ref, units)
}

func (a stockAdders) AddSKUStock(ctx context.Context, sku, units int64) (int64, error) {
	return a.skus.AddSKUStock(ctx, sku, units)
}

// serveOps serves the operator handler (metrics, profiler, health) on its own listener,
// away from the public API, and logs the address it bound, which tests and tools that
// start serve on port 0 read.
func serveOps(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen ops_addr %s: %w", addr, err)
	}
	// No write timeout: a CPU profile or trace streams for as long as it was asked to run.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	log.Info("operator listener serving", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// autoPipelined returns c's auto-pipeliner, or c when it has none. The client keeps one
// and hands it to every caller, so the commands of concurrent requests (rate limits,
// stock deductions, hot quota and red packet scripts) share its batches: under a crowd
// one write and one read carry many of them.
func autoPipelined(c goredis.UniversalClient, log *slog.Logger, what string) goredis.Cmdable {
	ap, err := c.AutoPipeline()
	if err != nil {
		log.Warn(what+" without auto-pipelining", "err", err)
		return c
	}
	return ap
}
