#!/usr/bin/env bash
# Static checks of the deployment files, with whatever tools this machine has (no Docker daemon needed):
#   compose files  docker compose config -q, else docker-compose config -q, else a YAML parse
#   Caddyfile      caddy adapt --validate (when caddy is installed)
#   systemd unit   systemd-analyze verify (with the binary path replaced, so it need not be installed)
#   scripts        bash -n; .env.example lists every setting src/core/config.cpp reads
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0; ok() { echo "ok    $*"; }; bad() { echo "FAIL  $*"; fail=1; }; skip() { echo "skip  $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Compose: in a copy, with a generated .env (the files need one).
cp docker-compose.yml docker-compose.unified.yml Caddyfile .env.example "$tmp/"; cp -r deploy "$tmp/"
deploy/init-env.sh check.example.com ops@example.com "$tmp/.env" >/dev/null
if docker compose version >/dev/null 2>&1; then dc=(docker compose); elif command -v docker-compose >/dev/null; then dc=(docker-compose); else dc=(); fi
for f in docker-compose.yml docker-compose.unified.yml; do
  if [ ${#dc[@]} -gt 0 ]; then
    if (cd "$tmp" && "${dc[@]}" -f "$f" config -q && "${dc[@]}" -f "$f" --profile webui config -q); then ok "$f (${dc[*]} config)"; else bad "$f"; fi
  elif python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f" 2>/dev/null; then ok "$f (YAML parse only)"
  else bad "$f (YAML)"; fi
done

if command -v caddy >/dev/null; then
  if GATEHOUSE_DOMAIN=check.example.com ACME_EMAIL=ops@example.com caddy adapt --config Caddyfile --adapter caddyfile --validate >/dev/null 2>"$tmp/caddy.err"
  then ok "Caddyfile (caddy adapt --validate)"; else cat "$tmp/caddy.err"; bad Caddyfile; fi
else skip "Caddyfile (caddy not installed)"; fi

if command -v systemd-analyze >/dev/null; then
  : > "$tmp/empty.env"
  sed -e "s|/usr/local/bin/gatehouse|/bin/true|g" -e "s|EnvironmentFile=.*|EnvironmentFile=$tmp/empty.env|" \
    deploy/gatehouse.service > "$tmp/gatehouse.service"
  if out=$(systemd-analyze verify "$tmp/gatehouse.service" 2>&1 | grep -v 'User=\|is not executable') && [ -n "$out" ]; then echo "$out"; bad deploy/gatehouse.service
  else ok "deploy/gatehouse.service (systemd-analyze verify)"; fi
else skip "deploy/gatehouse.service (no systemd-analyze)"; fi

for s in deploy/*.sh; do if bash -n "$s"; then ok "$s (bash -n)"; else bad "$s"; fi; done

missing=$(grep -oE '(get|parse_int<[^>]+>|parse_bool|get_list)\(env, "[A-Z_]+"' src/core/config.cpp | grep -oE '"[A-Z_]+"' | tr -d '"' | sort -u |
          while read -r n; do grep -qE "^#? ?$n=|$n( is read|\))" .env.example || echo "$n"; done)
if [ -z "$missing" ]; then ok ".env.example lists every setting of src/core/config.cpp"; else bad ".env.example lacks: $missing"; fi
exit $fail
