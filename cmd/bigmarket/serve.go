package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/internal/tick"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/raffle"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/recovery"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/strategy"
	"github.com/bigmarket/bigmarket/webhook"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	cfg.print(stderr)
	log := newLogger(cfg, stderr)
	return serve(ctx, cfg, log)
}

// serve runs the API until ctx ends, then shuts down in order: stop accepting, finish
// requests, flush the stock sync, stop consumers, close the backends.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.saveAdminToken(); err != nil {
		return err
	}
	b := &backends{}
	defer b.close()
	if err := openSQL(ctx, cfg, b, false, true); err != nil {
		return err
	}
	if err := openRedis(ctx, cfg, b, log); err != nil {
		return err
	}
	if err := openNATS(cfg, b, log); err != nil {
		return err
	}

	stockOpts := nats.StockOptions{Prefix: cfg.NATSPrefix, Replicas: cfg.NATSReplicas, FlushInterval: cfg.StockSyncInterval}
	if err := nats.EnsureStockStream(ctx, b.js, stockOpts); err != nil {
		return fmt.Errorf("ensure stock stream: %w", err)
	}
	eventOpts := nats.EventOptions{Prefix: cfg.NATSPrefix, Replicas: cfg.NATSReplicas,
		MaxDeliver: cfg.EventMaxDeliver, Backoff: cfg.eventBackoff, AckWait: cfg.EventAckWait}
	if err := nats.EnsureEventStreams(ctx, b.js, eventOpts); err != nil {
		return fmt.Errorf("ensure event streams: %w", err)
	}
	router, err := sqlstore.NewRouter(cfg.DBCount, cfg.TBCount)
	if err != nil {
		return err
	}
	configs := sqlstore.NewConfigStore(b.configDB)
	activityStore := sqlstore.NewActivityStore(b.configDB, cfg.location)
	users := sqlstore.NewUserStoreWith(b.userDBs, router, sqlstore.GroupCommit{Lanes: cfg.GroupCommitLanes, Max: cfg.GroupCommitMax})
	publisher := nats.NewPublisher(b.js, eventOpts)
	relay := outbox.NewRelay(outbox.Options{Publisher: publisher, Store: users, Logger: log,
		Grace: cfg.OutboxGrace, Every: cfg.OutboxEvery})
	users.OnTasksCommitted(relay.Committed)
	stock := redis.NewStock(b.redis, cfg.RedisPrefix)
	skuStock := redis.NewSKUStock(b.redis, cfg.RedisPrefix)
	stockSync := nats.NewStockSync(b.js, stockOpts, log)
	armoryBus := nats.NewArmoryBus(b.nc, cfg.NATSPrefix, log)
	recovered := recovery.NewService(recovery.Options{
		Configs: struct {
			*sqlstore.ConfigStore
			*sqlstore.ActivityStore
		}{configs, activityStore},
		Grants:   users,
		Log:      nats.NewStockLog(b.js, stockOpts),
		Awards:   stock,
		SKUStock: skuStock,
		Grace:    cfg.RecoveryGrace,
		Logger:   log,
	})
	defer recovered.Wait()
	strategies := strategy.NewService(strategy.Options{
		Configs:           configs,
		Stock:             stock,
		Sink:              stockSync,
		Recovery:          recovered,
		Logger:            log,
		DefaultStockTTL:   cfg.DefaultStockTTL,
		ImplicitLuckAward: cfg.ImplicitLuckAward,
		Announcer:         armoryBus,
		StockStore:        configs,
	})
	activities := activity.NewService(activity.Options{
		Configs: activityStore, Users: users, SKUStock: skuStock, Recovery: recovered,
		Location: cfg.location, Logger: log,
		StockZero:  nats.NewSKUStockZero(publisher),
		StockStore: activityStore,
		Announcer:  armoryBus,
	})
	// The SKU stock of the open activities is armed before anything is served, so that a
	// recharge right after a start never meets a missing counter (0009 until rebuilt).
	if err := armOpenActivities(ctx, activityStore, activities, log); err != nil {
		return err
	}
	awardConfigs := sqlstore.NewAwardConfigs(b.configDB)
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
	awards := award.NewService(award.Options{Configs: awardConfigs, Credits: users, Fallback: external})
	credits := credit.NewService(users, activities, nil)
	rebates := rebate.NewService(rebate.Options{Configs: awardConfigs, Store: users, Recharge: activities.Recharge,
		Credits: users, Location: cfg.location})
	// Concurrent grabs share Redis round trips through an auto-pipeliner: under a crowd
	// each write and read carries many scripts instead of one.
	var grabRedis goredis.Cmdable = b.redis
	if ap, err := b.redis.AutoPipeline(); err == nil {
		grabRedis = ap
	} else {
		log.Warn("red packets without auto-pipelining", "err", err)
	}
	// The grab consumer, made below, is also what a rebuild of a lost packet waits for.
	var grabConsumer *nats.Consumer
	redPackets := redpacket.NewService(redpacket.Options{
		Store: users, Hot: redis.NewRedPackets(grabRedis, cfg.RedisPrefix),
		Events: nats.NewGrabEvents(publisher), Logger: log,
		Drain:        redpacket.DrainFunc(func(ctx context.Context) error { return grabConsumer.WaitApplied(ctx) }),
		Limits:       redpacket.Limits{MaxCount: cfg.RedPacketMaxCount, MaxAmount: cfg.redPacketMaxAmount},
		RecoverGrace: cfg.RedPacketRecoverGrace, PublishTimeout: cfg.RedPacketPublishTimeout,
	})
	raffleOpts := raffle.Options{
		Activities: activities, Strategies: strategies, Records: users,
		Claims: redis.NewClaims(b.redis, cfg.RedisPrefix), Logger: log,
	}
	raffleOpts.BeforeRecord = cfg.faults.hook(faultBeforeRecord, log)
	raffles := raffle.NewService(raffleOpts)

	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	runJob := func(name string, job func(context.Context) error) {
		wg.Go(func() {
			if err := job(background); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("background job stopped", "job", name, "err", err)
			}
		})
	}
	guardKV, err := nats.OpenGuardKV(ctx, b.js, cfg.NATSPrefix, cfg.NATSReplicas, log)
	if err != nil {
		stopBackground()
		return err
	}
	front := guard.New(guard.Options{
		Defaults: cfg.guard, Breaker: cfg.breaker(), Cluster: redis.NewRateLimiter(b.redis, cfg.RedisPrefix),
		Blacklist: guardKV, IsFailure: httpapi.IsSystemFailure, MaxUsers: cfg.LimiterMaxUsers, Logger: log,
		CommitTimeout: cfg.DrawCommitTimeout,
	})
	// The shared settings and blacklist are applied before the first request is served.
	waitGuard, err := guardKV.Watch(background, front)
	if err != nil {
		stopBackground()
		return err
	}
	wg.Go(waitGuard)
	runJob("stock-sync", stockSync.Run)
	runJob("stock-sync-consumer", nats.NewStockSyncConsumer(b.js, stockOpts, configs, log).Run)
	distribute := nats.SendAwardHandler(awards)
	if pause := cfg.faults.hook(faultAfterDistribute, log); pause != nil {
		inner := distribute
		distribute = func(ctx context.Context, events []nats.Event) []error {
			errs := inner(ctx, events)
			pause(context.WithoutCancel(ctx)) // a stalled process: past the handler's deadline too
			return errs
		}
	}
	consumers := []*nats.Consumer{
		nats.NewConsumer(b.js, eventOpts, nats.TopicSKUStockZero, nats.SKUStockZeroHandler(activityStore), log),
		nats.NewBatchConsumer(b.js, eventOpts, award.TopicSendAward, distribute, log),
		nats.NewConsumer(b.js, eventOpts, rebate.TopicSendRebate, nats.SendRebateHandler(rebates), log),
		nats.NewConsumer(b.js, eventOpts, credit.TopicCreditAdjustSuccess, nats.CreditAdjustSuccessHandler(credits), log),
	}
	grabConsumer = nats.NewBatchConsumer(b.js, eventOpts, redpacket.TopicGrab, nats.GrabHandler(redPackets), log)
	consumers = append(consumers, grabConsumer)
	for _, c := range consumers {
		runJob(c.Topic()+"-consumer", c.Run)
	}
	runJob("outbox-relay", relay.Run)
	runJob("armory-listener", func(ctx context.Context) error {
		return armoryBus.Listen(ctx, strategies.Reload, activities.StockAdded)
	})
	runJob("red-packet-sweep", func(ctx context.Context) error {
		return redPackets.SweepLeased(ctx, redis.NewLeases(b.redis, cfg.RedisPrefix), cfg.RedPacketSweepEvery)
	})
	runJob("stock-reconcile", func(ctx context.Context) error {
		return tick.Every(ctx, cfg.StockReconcileEvery, func(ctx context.Context) {
			strategies.ReconcileStock(ctx, stock, configs)
			activities.ReconcileSKUStock(ctx, skuStock, activityStore)
		})
	})

	registry := newRegistry(metricSources{Draws: strategies.Stats, StockSync: stockSync.Stats, Groups: users.GroupStats,
		Guard: front.Stats, Outbox: relay.Stats, Consumers: consumers})
	api := httpapi.New(httpapi.Options{
		Strategies:         strategies,
		Activities:         activities,
		Raffles:            raffles,
		Credits:            credits,
		Rebates:            rebates,
		RedPackets:         redPackets,
		Stock:              stockAdders{strategies, activities},
		DeadLetters:        nats.NewDeadLetters(b.js, eventOpts, log),
		AppTokens:          cfg.appTokens,
		AdminToken:         cfg.AdminToken,
		PlainUserEndpoints: cfg.PlainUserEndpoints == "on",
		JWTSecret:          []byte(cfg.JWTSecret),
		Guard:              front,
		GuardedRoutes:      cfg.GuardedEndpoints,
		DCC:                guardKV,
		ArmoryNeedsAdmin:   cfg.Mode == ModeProduction,
		Ready:              b.ready,
		Logger:             log,
		Registry:           registry,
		MaxBodyBytes:       cfg.MaxBodyBytes,
	})
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		stopBackground()
		wg.Wait()
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	log.Info("bigmarket serving", "addr", ln.Addr().String(), "mode", cfg.Mode)
	if cfg.adminTokenPath != "" {
		log.Info("demo admin token kept in the data directory: `bigmarket admin-token` prints it (set BIGMARKET_ADMIN_TOKEN to choose one)", "file", cfg.adminTokenPath)
	}
	if cfg.OpsAddr != "" {
		stopOps, err := serveOps(cfg.OpsAddr, api.Operator(), log)
		if err != nil {
			ln.Close()
			stopBackground()
			wg.Wait()
			return err
		}
		defer stopOps()
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
	flushCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	if ferr := stockSync.Close(flushCtx); ferr != nil {
		log.Error("final stock sync flush", "err", ferr)
	}
	cancel()
	stopBackground()
	wg.Wait()
	log.Info("stopped")
	return err
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

func migrateCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	seed := fs.Bool("seed", false, "insert the demo data (idempotent)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	b := &backends{}
	defer b.close()
	if err := openSQL(ctx, cfg, b, true, *seed); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "migrated config database %s and %d user databases (%d tables each)",
		or(maskDSN(cfg.ConfigDSN), "(embedded SQLite in "+cfg.DataDir+")"), len(b.userDBs), cfg.TBCount)
	if *seed {
		fmt.Fprint(stderr, "; demo data seeded")
	}
	fmt.Fprintln(stderr)
	return nil
}
