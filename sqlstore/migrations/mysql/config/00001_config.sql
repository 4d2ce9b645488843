-- Config database (big_market): strategies, awards, rule trees, activities, rebates.
-- Idempotent (IF NOT EXISTS), so it also runs over an existing big-market schema.

-- +goose Up
CREATE TABLE IF NOT EXISTS strategy (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  strategy_id bigint NOT NULL,
  strategy_desc varchar(128) NOT NULL DEFAULT '',
  rule_models varchar(256) NOT NULL DEFAULT '',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_strategy_id (strategy_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS strategy_award (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  strategy_id bigint NOT NULL,
  award_id int NOT NULL,
  award_title varchar(128) NOT NULL DEFAULT '',
  award_subtitle varchar(128) NOT NULL DEFAULT '',
  award_count int NOT NULL DEFAULT 0,
  award_count_surplus int NOT NULL DEFAULT 0,
  award_rate decimal(6,4) NOT NULL,
  rule_models varchar(256) NOT NULL DEFAULT '',
  sort int NOT NULL DEFAULT 0,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_strategy_id_award_id (strategy_id, award_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS strategy_rule (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  strategy_id bigint NOT NULL,
  award_id int NULL DEFAULT NULL,
  rule_type tinyint NOT NULL DEFAULT 1,
  rule_model varchar(32) NOT NULL,
  rule_value varchar(4096) NOT NULL DEFAULT '',
  rule_desc varchar(256) NOT NULL DEFAULT '',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_strategy_id_rule_model (strategy_id, rule_model)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS award (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  award_id int NOT NULL,
  award_key varchar(32) NOT NULL,
  award_config varchar(256) NOT NULL DEFAULT '',
  award_desc varchar(128) NOT NULL DEFAULT '',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_award_id (award_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS rule_tree (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  tree_id varchar(32) NOT NULL,
  tree_name varchar(64) NOT NULL DEFAULT '',
  tree_desc varchar(128) NOT NULL DEFAULT '',
  tree_node_rule_key varchar(32) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_tree_id (tree_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS rule_tree_node (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  tree_id varchar(32) NOT NULL,
  rule_key varchar(32) NOT NULL,
  rule_desc varchar(64) NOT NULL DEFAULT '',
  rule_value varchar(256) NOT NULL DEFAULT '',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_tree_id_rule_key (tree_id, rule_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS rule_tree_node_line (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  tree_id varchar(32) NOT NULL,
  rule_node_from varchar(32) NOT NULL,
  rule_node_to varchar(32) NOT NULL,
  rule_limit_type varchar(8) NOT NULL,
  rule_limit_value varchar(32) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_tree_id_from_limit (tree_id, rule_node_from, rule_limit_type, rule_limit_value)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS raffle_activity (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  activity_id bigint NOT NULL,
  activity_name varchar(64) NOT NULL DEFAULT '',
  activity_desc varchar(128) NOT NULL DEFAULT '',
  begin_date_time datetime NOT NULL,
  end_date_time datetime NOT NULL,
  strategy_id bigint NOT NULL,
  state varchar(8) NOT NULL DEFAULT 'create',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_activity_id (activity_id),
  UNIQUE KEY uq_strategy_id (strategy_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS raffle_activity_count (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  activity_count_id bigint NOT NULL,
  total_count int NOT NULL,
  day_count int NOT NULL,
  month_count int NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_activity_count_id (activity_count_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS raffle_activity_sku (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  sku bigint NOT NULL,
  activity_id bigint NOT NULL,
  activity_count_id bigint NOT NULL,
  stock_count int NOT NULL,
  stock_count_surplus int NOT NULL,
  product_amount decimal(10,2) NOT NULL DEFAULT 0.00,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_sku (sku),
  KEY idx_activity_id_activity_count_id (activity_id, activity_count_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS raffle_activity_stage (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  channel varchar(16) NOT NULL,
  source varchar(16) NOT NULL,
  activity_id bigint NOT NULL,
  state varchar(8) NOT NULL DEFAULT 'create',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_channel_source_activity_id (channel, source, activity_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS daily_behavior_rebate (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  behavior_type varchar(16) NOT NULL,
  rebate_desc varchar(128) NOT NULL DEFAULT '',
  rebate_type varchar(16) NOT NULL,
  rebate_config varchar(32) NOT NULL,
  state varchar(8) NOT NULL DEFAULT 'open',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_behavior_rebate (behavior_type, rebate_type, rebate_config)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

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
