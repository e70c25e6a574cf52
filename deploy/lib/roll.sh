# shellcheck shell=bash disable=SC2034  # globals shared with ssh-deploy.sh
# Part of deploy/ssh-deploy.sh (sourced; uses its globals): the rolling restart of one host's
# units, each waited for (the node healthy, then routed to by the gateway) before the next.

node_addr() {  # UNIT -> "host port" of the node it runs
  local n name host port want=${1#strata-node@}
  want=${want%.service}
  for n in "${NODES[@]}"; do
    read -r name host port _ <<< "$n"
    [[ $name == "$want" ]] && { echo "$host $port"; return; }
  done
}

gateway_url() {  # base URL of the gateway, as seen from its own host
  local host=$GW_LISTEN_HOST scheme=http
  [[ $host == 0.0.0.0 || $host == "::" ]] && host=127.0.0.1
  [[ -n $TLS_FILES ]] && scheme=https
  echo "$scheme://$host:$GW_PORT"
}

wait_http_ok() {  # HOST URL SECONDS: until URL answers 2xx, asked on HOST itself
  remote "$1" "for _ in \$(seq $(($3 * 5))); do
      curl -fsSk -m 2 -o /dev/null '$2' && exit 0; sleep 0.2; done; exit 1" ||
    { log "$1: $2 not healthy after $3 s" >&2; return 1; }
}

wait_routed() {  # NODE: until the gateway's /api/cluster shows it healthy (else wait 2 probes)
  local name=$1 deadline=$((SECONDS + 60)) body
  remote "$GATEWAY_HOST" "systemctl is-active -q strata-gateway.service" 2>/dev/null || return 0
  while ((SECONDS < deadline)); do
    body=$(remote "$GATEWAY_HOST" ". /etc/strata/gateway.env 2>/dev/null || true
      curl -fsSk -m 2 \${STRATA_ADMIN_KEY:+-H \"Authorization: Bearer \$STRATA_ADMIN_KEY\"} \
        '$(gateway_url)/api/cluster'" 2>/dev/null) || break
    python3 -c 'import json,sys
c = json.loads(sys.stdin.read())
sys.exit(0 if any(b["name"] == sys.argv[1] and b["state"] == "healthy" for b in c["backends"]) else 1)' \
      "$name" <<< "$body" && return 0
    sleep 0.2
  done
  # No view of the gateway (admin key only in cluster.yaml): give it two probe intervals.
  sleep "$(awk -v ms="$PROBE_WAIT_MS" 'BEGIN {print ms / 1000}')"
}

roll_unit() {  # HOST UNIT ACTION
  local h=$1 u=$2 action=$3 addr
  CHANGED=1
  if ((DRY)); then log "$h: would $action $u"; return 0; fi
  log "$h: $action $u"
  remote "$h" "systemctl $action $u"
  if [[ $u == strata-node@* ]]; then
    addr=$(node_addr "$u")
    wait_http_ok "$h" "http://${addr% *}:${addr#* }/health" 300
    wait_routed "$(basename "$u" .service | sed 's/^strata-node@//')"
  elif [[ $u == strata-gateway.service && $action != reload ]]; then
    wait_http_ok "$h" "$(gateway_url)/health" 60
  fi
}

roll_host() {  # HOST: enable its units, start what is stopped, restart what changed
  local h=$1 u state
  for u in $(units_of "$h"); do
    state=$(remote "$h" "systemctl is-enabled -q $u || echo disabled; systemctl is-active -q $u || echo inactive")
    if [[ $state == *disabled* ]]; then
      CHANGED=1
      if ((DRY)); then log "$h: would enable $u"; else log "$h: enable $u"; remote "$h" "systemctl enable -q $u"; fi
    fi
    if [[ $state == *inactive* ]]; then
      roll_unit "$h" "$u" start
    elif [[ " ${RESTART["$h"]:-} " == *" $u "* ]]; then
      roll_unit "$h" "$u" restart
    elif [[ $u == strata-gateway.service && -n ${RELOAD_GW["$h"]:-} ]]; then
      roll_unit "$h" "$u" reload
    fi
  done
}
