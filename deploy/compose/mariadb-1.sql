-- MariaDB server 1 of deploy/compose and deploy/k8s: the config database big_market (made by the image,
-- MARIADB_DATABASE) and user database 01, as deploy/cluster's server 1 has them.
CREATE DATABASE IF NOT EXISTS `big_market_01` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON `big_market_01`.* TO 'bigmarket'@'%';
