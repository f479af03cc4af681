#!/usr/bin/env bash
# Writes .env for docker-compose.unified.yml from .env.example, with the domain, the ACME e-mail and fresh
# random secrets filled in. Refuses to overwrite an existing .env (secrets must not change under a running stack:
# a new ENCRYPTION_KEY cannot read stored tenant credentials, a new WEBUI_SECRET_KEY signs everyone out).
# Usage: deploy/init-env.sh DOMAIN [ACME_EMAIL] [OUTPUT]      (OUTPUT defaults to .env)
set -euo pipefail
cd "$(dirname "$0")/.."
domain="${1:?usage: deploy/init-env.sh DOMAIN [ACME_EMAIL] [OUTPUT]}"
email="${2:-}"
out="${3:-.env}"
if [ -e "$out" ]; then echo "init-env: $out exists; not overwriting it" >&2; exit 1; fi
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
umask 077
sed -e "s|^GATEHOUSE_DOMAIN=.*|GATEHOUSE_DOMAIN=${domain}|" \
    -e "s|^ACME_EMAIL=.*|ACME_EMAIL=${email}|" \
    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$(hex 24)|" \
    -e "s|^GATEHOUSE_DB_PASSWORD=.*|GATEHOUSE_DB_PASSWORD=$(hex 24)|" \
    -e "s|^OPENWEBUI_DB_PASSWORD=.*|OPENWEBUI_DB_PASSWORD=$(hex 24)|" \
    -e "s|^REDIS_PASSWORD=.*|REDIS_PASSWORD=$(hex 24)|" \
    -e "s|^WEBUI_SECRET_KEY=.*|WEBUI_SECRET_KEY=$(hex 32)|" \
    -e "s|^ENCRYPTION_KEY=.*|ENCRYPTION_KEY=$(b64 32)|" \
    -e "s|^SESSION_SECRET=.*|SESSION_SECRET=$(hex 32)|" \
    .env.example > "$out"
echo "wrote $out for https://${domain} (mode 600). Keep a copy of its secrets somewhere safe."
