#!/bin/sh
# Forms the Redis Cluster of compose.yaml (redis-cluster-create) and of deploy/k8s
# (the redis-cluster-create Job), as deploy/cluster's form_redis_cluster does: only when
# every node is new (cluster_known_nodes:1), three masters with one replica each; then it
# waits for cluster_state:ok on every node and a connected replica for each master.
# REDIS_NODES: the nodes' host names; REDIS_PORT: their port.
set -eu
: "${REDIS_NODES:?}" "${REDIS_PORT:?}"

ip_of() { # a name's address (an address stays as it is)
  case $1 in
    *[!0-9.]*) getent hosts "$1" | awk '{ print $1; exit }' ;;
    *) echo "$1" ;;
  esac
}

# CLUSTER MEET takes addresses, not names: resolve each node, waiting for its DNS record
# and its answer (a pod's record appears once the pod runs).
addrs=""
fresh=1
for host in $REDIS_NODES; do
  i=0
  until ip=$(ip_of "$host") && [ -n "$ip" ] && redis-cli -h "$ip" -p "$REDIS_PORT" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "redis node $host: no answer within 5 minutes" >&2; exit 1; }
    sleep 1
  done
  addrs="$addrs $ip:$REDIS_PORT"
  redis-cli -h "$ip" -p "$REDIS_PORT" cluster info | tr -d '\r' | grep -qx 'cluster_known_nodes:1' || fresh=0
done

if [ $fresh = 1 ]; then
  # shellcheck disable=SC2086 # one word per address
  redis-cli --cluster create $addrs --cluster-replicas 1 --cluster-yes
else
  echo "the nodes already know each other: not creating the cluster again"
fi

first=${addrs# }
first=${first%% *}
i=0
while :; do
  ok=1
  for a in $addrs; do
    redis-cli -h "${a%:*}" -p "${a##*:}" cluster info | tr -d '\r' | grep -qx 'cluster_state:ok' || ok=0
  done
  replicas=$(redis-cli -h "${first%:*}" -p "${first##*:}" cluster nodes |
    awk '$3 ~ /slave/ && $3 !~ /fail/ && $8 == "connected"' | wc -l)
  [ $ok = 1 ] && [ "$replicas" -eq 3 ] && break
  i=$((i + 1))
  [ $i -lt 120 ] || { echo "Redis Cluster not ok within 2 minutes" >&2; exit 1; }
  sleep 1
done
echo "Redis Cluster ok: 3 masters, 3 connected replicas"
