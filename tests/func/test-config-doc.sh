#!/usr/bin/env bash
# Config keys are declared once (src/config/config_keys.c); this test keeps
# every copy in the tree equal to that declaration:
#   - README "Configuration" holds exactly `blockd --config-doc=markdown`;
#   - the ansible role's defaults/main.yml holds exactly
#     `blockd --config-doc=ansible`, and the role's templates write each of
#     those variables into its key;
#   - every example config in conf/ and conf/local/ passes `blockd --check`.
#
# After changing config_keys.c, rewrite both copies with
#   BLOCKD=build/blockd tests/func/test-config-doc.sh --update
. "$(dirname "$0")/functions.sh"
set -e

update=false
[ "${1:-}" = --update ] && update=true
tmp=$(mktmp)
role="$SRCDIR/scripts/ansible/roles/blockd"

# splice FILE GENERATED: print FILE with its one block from a "config-doc
# begin" line to a "config-doc end" line replaced by the file GENERATED.
# Exit status 2 if FILE has no such block, 3 if it has two.
splice() {
    awk -v gen="$2" '
        /config-doc begin/ {
            if (n++) exit 3
            while ((getline line < gen) > 0) print line
            inside = 1
            next
        }
        /config-doc end/ && inside { inside = 0; done = 1; next }
        !inside { print }
        END { if (!done) exit 2 }' "$1"
}

for pair in "README markdown" "scripts/ansible/roles/blockd/defaults/main.yml ansible"; do
    set -- $pair
    file=$1 format=$2
    "$BLOCKD" --config-doc="$format" >"$tmp/$format" || fail "blockd --config-doc=$format failed"
    splice "$SRCDIR/$file" "$tmp/$format" >"$tmp/$format.spliced" ||
        fail "$file: expected one block from 'config-doc begin' to 'config-doc end'"
    if $update; then
        cp "$tmp/$format.spliced" "$SRCDIR/$file"
        echo "updated $file"
    elif ! diff -u "$SRCDIR/$file" "$tmp/$format.spliced"; then
        fail "$file differs from blockd --config-doc=$format (above); run" \
             "BLOCKD=build/blockd tests/func/test-config-doc.sh --update"
    fi
done
$update && exit 0

# Each exposed key reaches its config: the generated block pairs a comment
# "# SECTION.KEY: ..." with "VARIABLE: VALUE"; the section's template must
# write "KEY": "{{ VARIABLE }}" (unquoted for numbers); top-level and log
# keys must be in every template.
n=0
while read -r comment && read -r assignment; do
    path=${comment#\# }
    path=${path%%:*}
    section=top key=$path
    case $path in *.*) section=${path%.*} key=${path##*.} ;; esac
    var=${assignment%%:*}
    value=${assignment#*: }
    if [ "${value#\"}" != "$value" ]; then want="\"$key\": \"{{ $var }}\""
    else want="\"$key\": {{ $var }}"; fi
    case $section in
        top | log) templates="proxy blob agent" ;;
        *) templates=$section ;;
    esac
    for t in $templates; do
        grep -qF "$want" "$role/templates/$t.json.j2" ||
            fail "templates/$t.json.j2 does not write $want (for $path)"
    done
    n=$((n + 1))
done < <(grep -v -e 'config-doc' "$tmp/ansible" | grep -A1 '^# [a-z_.]*: ' | grep -v '^--$')
[ "$n" -gt 0 ] || fail "no variables in blockd --config-doc=ansible"
echo "ok: README and the ansible role ($n variables) match the key tables"

# The example configs load.  Their secret files do not exist here, so
# point them at a private one.
printf '0123456789abcdef0123\n' >"$tmp/secret"
chmod 600 "$tmp/secret"
for f in "$SRCDIR"/conf/*.json "$SRCDIR"/conf/local/*.json; do
    sed -E "s#\"(admin_token_file)\": \"[^\"]*\"#\"\\1\": \"$tmp/secret\"#" "$f" \
        >"$tmp/conf.json"
    out=$("$BLOCKD" --check --config "$tmp/conf.json" 2>&1) || fail "$f: $out"
done
echo "ok: every config in conf/ passes blockd --check"
