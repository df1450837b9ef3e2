#!/usr/bin/env bash
# The ansible role (scripts/ansible) renders valid configs: run it against
# localhost in every group, relocated under a temporary prefix and without
# systemd, and check each generated file with `blockd --check` (the role
# runs that check too, and the playbook fails if it fails).
. "$(dirname "$0")/functions.sh"
set -e
requires ansible-playbook --version

tmp=$(mktmp)
cat >"$tmp/inventory.ini" <<INV
[blockd_proxies]
localhost ansible_connection=local blockd_node_id=1 blockd_addr=127.0.0.1

[blockd_blobs]
localhost

[blockd_agents]
localhost
INV
ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_NOCOLOR=1 ansible-playbook -i "$tmp/inventory.ini" \
    "$SRCDIR/scripts/ansible/site.yml" \
    -e "blockd_prefix=$tmp/root" -e blockd_service_manager=none \
    -e blockd_install_packages=false -e "blockd_binary_src=$BLOCKD" \
    -e ansible_become=false >"$tmp/ansible.log" 2>&1 || { cat "$tmp/ansible.log"; fail "playbook failed"; }

for r in proxy blob agent; do
    f="$tmp/root/etc/blockd/$r.json"
    [ -f "$f" ] || fail "no $f"
    "$tmp/root/usr/local/bin/blockd" --check --config "$f" || fail "$f does not validate"
done
[ "$(stat -c %a "$tmp/root/etc/blockd/secret")" = 600 ] || fail "secret is not 0600"
[ "$(stat -c %a "$tmp/root/etc/blockd/admin.token")" = 600 ] || fail "token is not 0600"
grep -q '"peers"' "$tmp/root/etc/blockd/proxy.json" || fail "proxy config has no peers"
echo "ansible role renders valid configs"
