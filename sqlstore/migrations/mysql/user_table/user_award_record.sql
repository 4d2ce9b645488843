CREATE TABLE IF NOT EXISTS user_award_record{{suffix}} (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  activity_id bigint NOT NULL,
  strategy_id bigint NOT NULL,
  order_id varchar(32) NOT NULL,
  award_id int NOT NULL,
  award_title varchar(128) NOT NULL DEFAULT '',
  award_time datetime NOT NULL,
  award_state varchar(16) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_order_id (order_id),
  KEY idx_user_id_activity_id_award_time (user_id, activity_id, award_time),
  KEY idx_strategy_id_award_id (strategy_id, award_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
