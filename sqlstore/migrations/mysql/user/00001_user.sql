-- User database (big_market_NN): the tables that exist once per database. The sharded
-- tables (_000 …) are created by MigrateUser from ../user_table for the configured count.

-- +goose Up
CREATE TABLE IF NOT EXISTS raffle_activity_account (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  activity_id bigint NOT NULL,
  total_count int NOT NULL,
  total_count_surplus int NOT NULL,
  day_count int NOT NULL,
  day_count_surplus int NOT NULL,
  month_count int NOT NULL,
  month_count_surplus int NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_user_id_activity_id (user_id, activity_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS raffle_activity_account_day (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  activity_id bigint NOT NULL,
  day varchar(10) NOT NULL,
  day_count int NOT NULL,
  day_count_surplus int NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_user_id_activity_id_day (user_id, activity_id, day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS raffle_activity_account_month (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  activity_id bigint NOT NULL,
  month varchar(7) NOT NULL,
  month_count int NOT NULL,
  month_count_surplus int NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_user_id_activity_id_month (user_id, activity_id, month)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS user_credit_account (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  total_amount decimal(10,2) NOT NULL DEFAULT 0.00,
  available_amount decimal(10,2) NOT NULL DEFAULT 0.00,
  account_status varchar(8) NOT NULL DEFAULT 'open',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS task (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  topic varchar(64) NOT NULL,
  message_id varchar(64) NOT NULL,
  message text NOT NULL,
  state varchar(16) NOT NULL DEFAULT 'create',
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_message_id (message_id),
  KEY idx_state_create_time (state, create_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE IF EXISTS task;
DROP TABLE IF EXISTS user_credit_account;
DROP TABLE IF EXISTS raffle_activity_account_month;
DROP TABLE IF EXISTS raffle_activity_account_day;
DROP TABLE IF EXISTS raffle_activity_account;
