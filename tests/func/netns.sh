# netns.sh: network namespaces for partition tests (CONTRACT.md row 5).
# Source it after functions.sh.
#
#   netns_requires                     # skip (exit 77) with the reason if unusable
#   netns_init                         # a bridge in a namespace of its own
#   netns_add_node n1                  # namespace + veth into the bridge; sets NETNS_IP[n1]
#   netns_exec n1 nbdkit ... &         # run a process inside n1
#   netns_cut n1 / netns_heal n1       # isolate the node entirely / undo
#   netns_drop n1 n2                   # drop packets from n1 to n2 (one direction)
#   netns_cut_peer n1 n2               # drop both directions between n1 and n2
#   netns_heal_peer n1 n2              # undo both
#
# Layout: every test gets its own namespaces, named ${NETNS_PREFIX}-NAME,
# and a bridge namespace ${NETNS_PREFIX}-br holding br0; node i gets
# 10.77.0.(i+1)/24 on its eth0, whose peer vN is a port of br0.  Addresses
# live only inside these namespaces, so parallel tests never collide.
#
# Cuts:
#   netns_cut       sets the node's bridge port down: peers see silence
#                   (timeouts), the node itself sees no carrier.
#   netns_drop A B  drops A's packets to B.  Default method "route", needing
#                   only iproute2: a host route in A sends B's address via
#                   10.77.0.254, which nobody owns, so the packets die
#                   unanswered (new connections fail after ARP gives up,
#                   ~3 s; existing ones time out), as on a real cut link.
#                   A one-way drop B->A breaks TCP from A to B as well (no
#                   replies) while packets from A still reach B.  Set
#                   NETNS_DROP_METHOD=iptables or nft to drop with a DROP
#                   rule in A's OUTPUT chain instead; the test skips if that
#                   tool is missing (nothing is installed).
# Only ever address NETNS_IP[...] from inside a namespace (netns_exec): the
# host namespace has no route to 10.77.0.0/24, and such traffic would leave
# the machine.
# netns_cleanup (run at exit) kills processes left in the namespaces and
# deletes every namespace, and with them every link, it created.

NETNS_PREFIX=
NETNS_GW=10.77.0.254
NETNS_DROP_METHOD=${NETNS_DROP_METHOD:-route}
declare -gA NETNS_IP=() NETNS_NS=() NETNS_PORT=()
_netns_count=0
_netns_list=()

# netns_requires: skip unless namespaces, veth and bridges work here.
netns_requires() {
    requires ip -V
    [ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
    local p="bdprobe$$"
    if ! ip netns add "$p" 2>/dev/null; then
        skip "cannot create a network namespace (ip netns add failed)"
    fi
    local ok=true why=""
    ip -n "$p" link add br0 type bridge 2>/dev/null || { ok=false; why="no bridge support"; }
    $ok && { ip -n "$p" link add pa type veth peer name pb 2>/dev/null || { ok=false; why="no veth support"; }; }
    ip netns del "$p" 2>/dev/null
    $ok || skip "network namespaces unusable: $why"
    case "$NETNS_DROP_METHOD" in
    route) ;;
    iptables) command -v iptables >/dev/null || skip "NETNS_DROP_METHOD=iptables but iptables is not installed" ;;
    nft) command -v nft >/dev/null || skip "NETNS_DROP_METHOD=nft but nft is not installed" ;;
    *) fail "NETNS_DROP_METHOD must be route, iptables or nft" ;;
    esac
}

# netns_init: create the bridge namespace; register cleanup.
netns_init() {
    NETNS_PREFIX="bd$$r$RANDOM"
    cleanup_fn netns_cleanup
    _netns_ns_add "$NETNS_PREFIX-br"
    ip -n "$NETNS_PREFIX-br" link add br0 type bridge || fail "bridge"
    ip -n "$NETNS_PREFIX-br" link set br0 up
}

_netns_ns_add() {
    ip netns add "$1" || fail "ip netns add $1"
    _netns_list+=("$1")
    ip -n "$1" link set lo up
}

# netns_add_node NAME: a namespace with eth0 on the bridge.  Sets
# NETNS_IP[NAME] and NETNS_NS[NAME].
netns_add_node() {
    local name=$1
    [ -n "$NETNS_PREFIX" ] || fail "netns_add_node before netns_init"
    [ -z "${NETNS_NS[$name]:-}" ] || fail "netns node $name exists"
    _netns_count=$((_netns_count + 1))
    [ $_netns_count -lt 250 ] || fail "too many netns nodes"
    local ns="$NETNS_PREFIX-$name" br="$NETNS_PREFIX-br" port="v$_netns_count"
    local ip="10.77.0.$((_netns_count + 1))"
    _netns_ns_add "$ns"
    ip -n "$br" link add "$port" type veth peer name eth0 netns "$ns" || fail "veth for $name"
    ip -n "$br" link set "$port" master br0
    ip -n "$br" link set "$port" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    NETNS_NS[$name]=$ns
    NETNS_IP[$name]=$ip
    NETNS_PORT[$name]=$port
}

_netns_ns_of() {
    local ns=${NETNS_NS[$1]:-}
    [ -n "$ns" ] || fail "no netns node named $1"
    echo "$ns"
}

# netns_exec NAME CMD...: run CMD inside NAME (exec, so $! is CMD's pid
# when backgrounded).
netns_exec() {
    local ns
    ns=$(_netns_ns_of "$1")
    shift
    ip netns exec "$ns" "$@"
}

# netns_cut NAME: isolate NAME from every peer.
netns_cut() {
    _netns_ns_of "$1" >/dev/null
    ip -n "$NETNS_PREFIX-br" link set "${NETNS_PORT[$1]}" down
}

# netns_heal NAME: undo netns_cut and every drop from or to NAME.
netns_heal() {
    _netns_ns_of "$1" >/dev/null
    ip -n "$NETNS_PREFIX-br" link set "${NETNS_PORT[$1]}" up
    local other
    for other in "${!NETNS_NS[@]}"; do
        [ "$other" = "$1" ] && continue
        netns_undrop "$1" "$other"
        netns_undrop "$other" "$1"
    done
}

# netns_drop FROM TO: drop packets from FROM to TO.
netns_drop() {
    local ns to_ip=${NETNS_IP[$2]:-}
    ns=$(_netns_ns_of "$1")
    [ -n "$to_ip" ] || fail "no netns node named $2"
    case "$NETNS_DROP_METHOD" in
    route) ip -n "$ns" route replace "$to_ip/32" via "$NETNS_GW" dev eth0 ;;
    iptables) ip netns exec "$ns" iptables -I OUTPUT -d "$to_ip" -j DROP ;;
    nft)
        ip netns exec "$ns" nft add table inet bdcut 2>/dev/null || true
        ip netns exec "$ns" nft add chain inet bdcut out '{ type filter hook output priority 0; }' 2>/dev/null || true
        ip netns exec "$ns" nft add rule inet bdcut out ip daddr "$to_ip" drop
        ;;
    esac
}

# netns_undrop FROM TO: undo netns_drop FROM TO (no error if not dropped).
netns_undrop() {
    local ns=${NETNS_NS[$1]:-} to_ip=${NETNS_IP[$2]:-}
    [ -n "$ns" ] && [ -n "$to_ip" ] || fail "netns_undrop: unknown node"
    case "$NETNS_DROP_METHOD" in
    route) ip -n "$ns" route del "$to_ip/32" via "$NETNS_GW" 2>/dev/null || true ;;
    iptables) while ip netns exec "$ns" iptables -D OUTPUT -d "$to_ip" -j DROP 2>/dev/null; do :; done ;;
    nft)
        local h
        for h in $(ip netns exec "$ns" nft -a list chain inet bdcut out 2>/dev/null |
            sed -n "s/.*ip daddr $to_ip drop # handle \([0-9]*\)/\1/p"); do
            ip netns exec "$ns" nft delete rule inet bdcut out handle "$h"
        done
        ;;
    esac
}

netns_cut_peer() { netns_drop "$1" "$2"; netns_drop "$2" "$1"; }
netns_heal_peer() { netns_undrop "$1" "$2"; netns_undrop "$2" "$1"; }

# netns_cleanup: kill what still runs in our namespaces, delete them all.
netns_cleanup() {
    local ns pid
    for ns in "${_netns_list[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    for ns in "${_netns_list[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    _netns_list=()
}
