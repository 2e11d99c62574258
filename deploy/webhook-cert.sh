#!/usr/bin/env bash
# The admission webhook's TLS without cert-manager: makes a self-signed CA and a serving
# certificate for the offtake-api Service, stores them in the Secret offtake-webhook-tls, and
# puts the CA into the ValidatingWebhookConfiguration's caBundle. Run it after
# `kubectl apply -k deploy/`, and again before the certificate expires (DAYS, default 365).
#
#   deploy/webhook-cert.sh [--namespace offtake-system] [--days 365] [--dir DIR] [-- kubectl flags...]
#
# The CA's key is not kept unless --dir names a directory for the files.
set -euo pipefail

namespace=offtake-system
days=365
dir=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace) namespace=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "webhook-cert.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
kubectl=(kubectl "$@")
service=offtake-api
webhook=offtake-dataproducts
secret=offtake-webhook-tls

if [[ -z "$dir" ]]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
fi
umask 077

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -subj "/CN=offtake-webhook-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=$service.$namespace.svc" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s,DNS:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
  "$service.$namespace.svc" "$service.$namespace.svc.cluster.local" "$service.$namespace" >"$dir/ext.cnf"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days "$days" -extfile "$dir/ext.cnf" -out "$dir/tls.crt" 2>/dev/null

"${kubectl[@]}" --namespace "$namespace" create secret tls "$secret" \
  --cert "$dir/tls.crt" --key "$dir/tls.key" --dry-run=client -o yaml | "${kubectl[@]}" apply -f -
ca_bundle=$(base64 <"$dir/ca.crt" | tr -d '\n')
"${kubectl[@]}" patch validatingwebhookconfiguration "$webhook" --type=json \
  -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}]"
# Pods read a Secret's new version within a minute; restart them to serve it at once.
"${kubectl[@]}" --namespace "$namespace" rollout restart deployment/offtake-api >/dev/null 2>&1 || true
echo "webhook-cert.sh: $secret and the caBundle of $webhook are set (valid $days days)"
