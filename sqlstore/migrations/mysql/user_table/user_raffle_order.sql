CREATE TABLE IF NOT EXISTS user_raffle_order{{suffix}} (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  activity_id bigint NOT NULL,
  activity_name varchar(64) NOT NULL DEFAULT '',
  strategy_id bigint NOT NULL,
  order_id varchar(32) NOT NULL,
  order_time datetime NOT NULL,
  order_state varchar(16) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_order_id (order_id),
  KEY idx_user_id_activity_id_order_state (user_id, activity_id, order_state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
