# shellcheck shell=bash disable=SC2034  # globals shared with ssh-deploy.sh
# Part of deploy/ssh-deploy.sh (sourced; uses its globals): builds each host's file tree, prepares
# the host (packages, the strata user) and syncs the tree, recording what changed.

units_of() {  # HOST -> the strata units that run there (nodes in file order, the gateway last)
  local n name host
  for n in "${NODES[@]}"; do
    read -r name host _ <<< "$n"
    [[ $host == "$1" ]] && echo "strata-node@$name.service"
  done
  [[ $1 == "$GATEWAY_HOST" ]] && echo "strata-gateway.service"
  return 0
}

ipv4_of() {  # HOST -> its IPv4 address (itself when it is one)
  if [[ $1 =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then echo "$1"; return; fi
  getent ahostsv4 "$1" | awk '{print $1; exit}'
}

render_firewall() {  # HOST OUT: deploy/firewall/strata.nft filled in for this host
  local h=$1 out=$2 n name host port sport cluster="" ports=() a pub priv
  for a in "${HOSTS[@]}"; do
    a=$(ipv4_of "$a"); [[ -n $a ]] || continue
    [[ ",$cluster," == *",$a,"* ]] || cluster+="${cluster:+, }$a"
  done
  for n in "${NODES[@]}"; do
    read -r name host port sport _ <<< "$n"
    [[ $host == "$h" ]] || continue
    ports+=("$port"); ((sport > 0)) && ports+=("$sport")
  done
  pub="# no public port on this host"
  [[ $h == "$GATEWAY_HOST" ]] && pub="tcp dport $GW_PORT accept"
  priv="# no node on this host"
  if ((${#ports[@]})); then
    priv="ip saddr @cluster_v4 tcp dport { $(IFS=,; echo "${ports[*]}") } accept"
  fi
  sed -e "s|@SSH_PORT@|$SSH_PORT|g" -e "s|@CLUSTER_V4@|$cluster|" \
      -e "s|@ADMIN_SOURCES@|$ADMIN_SOURCES|" -e "s|@PUBLIC_RULE@|$pub|" \
      -e "s|@PRIVATE_RULE@|$priv|" "$ROOT/firewall/strata.nft" > "$out"
}

link_or_copy() { ln -f "$1" "$2" 2>/dev/null || cp -p "$1" "$2"; }

stage_host() {  # HOST: $WORK/HOST/{pub,priv} mirror what the host must hold
  local h=$1 pub="$WORK/$1/pub" priv="$WORK/$1/priv/etc/strata" u f n name host mem
  local sd="$pub/etc/systemd/system"
  mkdir -p "$pub/opt/strata/bin" "$sd" "$priv"
  link_or_copy "$BINARY" "$pub/opt/strata/bin/strata"
  cp "$CONFIG" "$priv/cluster.yaml"
  for f in "${FILES[@]}"; do  # secrets and TLS files named by the config
    [[ -n $f && $f != /* ]] || continue  # absolute: expected on the host already (e.g. certbot's)
    mkdir -p "$priv/$(dirname "$f")"
    cp "$CONFIG_DIR/$f" "$priv/$f"
  done
  cp "$ROOT/systemd/strata-firewall.service" "$sd/"
  render_firewall "$h" "$priv/strata.nft"
  local is_node=0
  for n in "${NODES[@]}"; do
    read -r name host _ _ mem <<< "$n"
    [[ $host == "$h" ]] || continue
    is_node=1
    if ((mem > 0)); then
      mkdir -p "$sd/strata-node@$name.service.d"
      printf '[Service]\nMemoryMax=%s\n' "$mem" > "$sd/strata-node@$name.service.d/memory.conf"
    fi
    [[ -n $ENV_DIR && -f $ENV_DIR/node-$name.env ]] && cp "$ENV_DIR/node-$name.env" "$priv/"
  done
  if ((is_node)); then
    cp "$ROOT/systemd/strata-node@.service" "$sd/"
    [[ -n $ENV_DIR && -f $ENV_DIR/node.env ]] && cp "$ENV_DIR/node.env" "$priv/"
    if [[ -n $MODEL ]]; then
      mkdir -p "$pub$(dirname "$MODEL_PATH")"
      link_or_copy "$MODEL" "$pub$MODEL_PATH"
    fi
  fi
  if [[ $h == "$GATEWAY_HOST" ]]; then
    cp "$ROOT/systemd/strata-gateway.service" "$sd/"
    [[ -n $ENV_DIR && -f $ENV_DIR/gateway.env ]] && cp "$ENV_DIR/gateway.env" "$priv/"
  fi
  return 0
}

prepare_host() {  # HOST: missing runtime packages, the strata user, its state directory
  local out
  out=$(remote "$1" "
    set -e
    missing=()
    if [ $PACKAGES = 1 ]; then
      for p in ${PKGS[*]}; do
        dpkg-query -W -f='\${Status}' \$p 2>/dev/null | grep -q 'ok installed' || missing+=(\$p)
      done
    fi
    if [ \${#missing[@]} -gt 0 ]; then
      echo \"install packages: \${missing[*]}\"
      [ $DRY = 1 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \${missing[@]} >/dev/null
    fi
    if ! getent passwd strata >/dev/null; then
      echo 'create system user strata'
      [ $DRY = 1 ] || useradd --system --home-dir /var/lib/strata --no-create-home \
        --shell /usr/sbin/nologin --user-group strata
    fi")
  if [[ -n $out ]]; then
    CHANGED=1
    while IFS= read -r l; do log "$1: $( ((DRY)) && echo 'would ')$l"; done <<< "$out"
  fi
}

rsync_tree() {  # HOST SRC CHMOD -> itemized changes (rsync --checksum: content, not mtime)
  local e; e=$(printf '%q ' "${SSH[@]}")
  rsync -rlc --perms --omit-dir-times --itemize-changes --chmod="$3" \
    "${DRYRUN[@]}" -e "$e" --rsync-path="${SUDO:+$SUDO }rsync" \
    "$2/" "$SSH_USER@$1:/" | awk 'substr($1, 2, 1) ~ /[fL]/ {print $2}'
}

classify() {  # HOST PATH: which units a changed file concerns -> RESTART / RELOAD_GW / FW
  local h=$1 p=$2 u f name
  case $p in
    etc/strata/strata.nft|etc/systemd/system/strata-firewall.service) FW["$h"]=1; return ;;
    etc/strata/node-*.env) RESTART["$h"]+=" strata-node@$(basename "$p" .env | sed 's/^node-//').service"; return ;;
    etc/strata/node.env|etc/systemd/system/strata-node@.service|"${MODEL_PATH#/}")
      for u in $(units_of "$h"); do [[ $u == strata-node@* ]] && RESTART["$h"]+=" $u"; done; return ;;
    etc/systemd/system/strata-node@*.service.d/*)
      name=${p#etc/systemd/system/strata-node@}; RESTART["$h"]+=" strata-node@${name%%.service.d/*}.service"; return ;;
    etc/strata/gateway.env|etc/systemd/system/strata-gateway.service)
      RESTART["$h"]+=" strata-gateway.service"; return ;;
  esac
  if [[ -n $TLS_FILES && " $TLS_FILES " == *" /$p "* ]]; then  # SIGHUP reloads certificates
    [[ $h == "$GATEWAY_HOST" ]] && RELOAD_GW["$h"]=1
    return
  fi
  RESTART["$h"]+=" $(units_of "$h" | tr '\n' ' ')"  # the binary, cluster.yaml, secrets
}

sync_host() {  # HOST: copy its tree; record what must restart
  local h=$1 p changed=() secrets
  mapfile -t changed < <(rsync_tree "$h" "$WORK/$h/pub" "D755,Fgo-w"
                         rsync_tree "$h" "$WORK/$h/priv" "D755,F600")
  for p in "${changed[@]}"; do
    [[ -n $p ]] || continue
    CHANGED=1
    log "$h: $( ((DRY)) && echo 'would update' || echo 'updated') /$p"
    classify "$h" "$p"
  done
  ((DRY)) && return 0
  secrets=$(cd "$WORK/$h/priv" && find etc/strata -type f -printf '/%p ')
  # The service user reads its config and secrets; daemon-reload picks up unit changes.
  remote "$h" "chown strata:strata /etc/strata $secrets &&
    mkdir -p /var/lib/strata && chown strata:strata /var/lib/strata &&
    { [ ${#changed[@]} = 0 ] || systemctl daemon-reload; }"
  if ((FIREWALL)); then
    if [[ -n ${FW["$h"]:-} ]] || ! remote "$h" "nft list table inet strata >/dev/null 2>&1"; then
      log "$h: applying firewall rules (table inet strata)"; CHANGED=1
      remote "$h" "nft -f /etc/strata/strata.nft && systemctl enable strata-firewall.service"
    fi
  fi
}
