-- Config database (big_market): strategies, awards, rule trees, activities, rebates.
-- Idempotent (IF NOT EXISTS), so it also runs over an existing big-market schema.
-- SQLite: decimal columns are TEXT ("0.0300", "200.00") so they read back exactly; DATETIME
-- columns hold "YYYY-MM-DD HH:MM:SS" in UTC.

-- +goose Up
CREATE TABLE IF NOT EXISTS strategy (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  strategy_id INTEGER NOT NULL,
  strategy_desc TEXT NOT NULL DEFAULT '',
  rule_models TEXT NOT NULL DEFAULT '',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (strategy_id)
);

CREATE TABLE IF NOT EXISTS strategy_award (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  strategy_id INTEGER NOT NULL,
  award_id INTEGER NOT NULL,
  award_title TEXT NOT NULL DEFAULT '',
  award_subtitle TEXT NOT NULL DEFAULT '',
  award_count INTEGER NOT NULL DEFAULT 0,
  award_count_surplus INTEGER NOT NULL DEFAULT 0,
  award_rate TEXT NOT NULL,
  rule_models TEXT NOT NULL DEFAULT '',
  sort INTEGER NOT NULL DEFAULT 0,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (strategy_id, award_id)
);

CREATE TABLE IF NOT EXISTS strategy_rule (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  strategy_id INTEGER NOT NULL,
  award_id INTEGER NULL DEFAULT NULL,
  rule_type INTEGER NOT NULL DEFAULT 1,
  rule_model TEXT NOT NULL,
  rule_value TEXT NOT NULL DEFAULT '',
  rule_desc TEXT NOT NULL DEFAULT '',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (strategy_id, rule_model)
);

CREATE TABLE IF NOT EXISTS award (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  award_id INTEGER NOT NULL,
  award_key TEXT NOT NULL,
  award_config TEXT NOT NULL DEFAULT '',
  award_desc TEXT NOT NULL DEFAULT '',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (award_id)
);

CREATE TABLE IF NOT EXISTS rule_tree (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tree_id TEXT NOT NULL,
  tree_name TEXT NOT NULL DEFAULT '',
  tree_desc TEXT NOT NULL DEFAULT '',
  tree_node_rule_key TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (tree_id)
);

CREATE TABLE IF NOT EXISTS rule_tree_node (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tree_id TEXT NOT NULL,
  rule_key TEXT NOT NULL,
  rule_desc TEXT NOT NULL DEFAULT '',
  rule_value TEXT NOT NULL DEFAULT '',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (tree_id, rule_key)
);

CREATE TABLE IF NOT EXISTS rule_tree_node_line (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tree_id TEXT NOT NULL,
  rule_node_from TEXT NOT NULL,
  rule_node_to TEXT NOT NULL,
  rule_limit_type TEXT NOT NULL,
  rule_limit_value TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (tree_id, rule_node_from, rule_limit_type, rule_limit_value)
);

CREATE TABLE IF NOT EXISTS raffle_activity (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  activity_id INTEGER NOT NULL,
  activity_name TEXT NOT NULL DEFAULT '',
  activity_desc TEXT NOT NULL DEFAULT '',
  begin_date_time DATETIME NOT NULL,
  end_date_time DATETIME NOT NULL,
  strategy_id INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'create',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (activity_id),
  UNIQUE (strategy_id)
);

CREATE TABLE IF NOT EXISTS raffle_activity_count (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  activity_count_id INTEGER NOT NULL,
  total_count INTEGER NOT NULL,
  day_count INTEGER NOT NULL,
  month_count INTEGER NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (activity_count_id)
);

CREATE TABLE IF NOT EXISTS raffle_activity_sku (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sku INTEGER NOT NULL,
  activity_id INTEGER NOT NULL,
  activity_count_id INTEGER NOT NULL,
  stock_count INTEGER NOT NULL,
  stock_count_surplus INTEGER NOT NULL,
  product_amount TEXT NOT NULL DEFAULT '0.00',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (sku)
);
CREATE INDEX IF NOT EXISTS idx_raffle_activity_sku_activity_id_activity_count_id ON raffle_activity_sku (activity_id, activity_count_id);

CREATE TABLE IF NOT EXISTS raffle_activity_stage (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  channel TEXT NOT NULL,
  source TEXT NOT NULL,
  activity_id INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'create',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (channel, source, activity_id)
);

CREATE TABLE IF NOT EXISTS daily_behavior_rebate (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  behavior_type TEXT NOT NULL,
  rebate_desc TEXT NOT NULL DEFAULT '',
  rebate_type TEXT NOT NULL,
  rebate_config TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'open',
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (behavior_type, rebate_type, rebate_config)
);

-- +goose Down
DROP TABLE IF EXISTS daily_behavior_rebate;
DROP TABLE IF EXISTS raffle_activity_stage;
DROP TABLE IF EXISTS raffle_activity_sku;
DROP TABLE IF EXISTS raffle_activity_count;
DROP TABLE IF EXISTS raffle_activity;
DROP TABLE IF EXISTS rule_tree_node_line;
DROP TABLE IF EXISTS rule_tree_node;
DROP TABLE IF EXISTS rule_tree;
DROP TABLE IF EXISTS award;
DROP TABLE IF EXISTS strategy_rule;
DROP TABLE IF EXISTS strategy_award;
DROP TABLE IF EXISTS strategy;
