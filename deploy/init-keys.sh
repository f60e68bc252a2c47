#!/bin/sh
# init-keys.sh DIR — creates the keys the compose stack needs in DIR (the
# "keys" volume), each only if it is missing, so restarts keep them:
#
#   app_private.pem      the app's RSA 2048 private key (workers: ZHIMA_APP_PRIVATE_KEY_FILE)
#   app_public.pem       its public half (sandbox: --app-public-key-file)
#   alipay_private.pem   the sandbox's "Alipay" key (--alipay-private-key-file), kept so a
#                        restarted sandbox signs with the key the running workers hold
#   alipay_public.pem    its public half (workers: ZHIMA_ALIPAY_PUBLIC_KEY_FILE); the sandbox
#                        writes the same key here again at start (--write-alipay-public-key)
#   data_keys            id:base64-of-32-bytes (workers and enqueue: DATA_KEYS_FILE)
#
# It runs as root in an alpine container (installing openssl only when a key
# must be made) and hands the files to uid 65532, the distroless "nonroot"
# user the zhimaq image runs as. Private keys and data keys are 0400.
set -eu

dir=${1:-/keys}
owner=${KEYS_OWNER:-65532:65532}
mkdir -p "$dir"
cd "$dir"

need() {
	command -v openssl >/dev/null 2>&1 && return 0
	command -v apk >/dev/null 2>&1 || { echo "init-keys: openssl is missing" >&2; exit 1; }
	apk add --no-cache --quiet openssl
}

# rsa_pair PRIVATE PUBLIC: a 2048-bit RSA key (PKCS#8 PEM) and its PKIX public half.
rsa_pair() {
	if [ ! -s "$1" ]; then
		need
		umask 077
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.tmp" 2>/dev/null
		mv "$1.tmp" "$1"
		rm -f "$2"
		echo "init-keys: created $dir/$1"
	fi
	if [ ! -s "$2" ]; then
		need
		umask 022
		openssl pkey -in "$1" -pubout -out "$2.tmp"
		mv "$2.tmp" "$2"
		echo "init-keys: created $dir/$2"
	fi
}

rsa_pair app_private.pem app_public.pem
rsa_pair alipay_private.pem alipay_public.pem

if [ ! -s data_keys ]; then
	need
	umask 077
	printf 'k%s:%s\n' "$(date -u +%Y%m%d)" "$(openssl rand -base64 32)" >data_keys.tmp
	mv data_keys.tmp data_keys
	echo "init-keys: created $dir/data_keys"
fi

chown "$owner" . app_private.pem app_public.pem alipay_private.pem alipay_public.pem data_keys
chmod 0755 .
chmod 0400 app_private.pem alipay_private.pem data_keys
chmod 0444 app_public.pem
chmod 0644 alipay_public.pem
echo "init-keys: keys ready in $dir"
