#!/bin/sh
# Proves the fips build runs on one cryptographic implementation, AWS-LC-FIPS:
#  1. lists the crypto crates in the fips build's dependency tree
#     (`cargo tree -e features --features fips`, normal and build edges: dev-dependencies such
#     as the `aes-gcm` test oracle are not part of the binary) and fails on any other
#     AEAD/RSA/TLS-crypto provider (ring, RustCrypto AEADs and RSA, OpenSSL, native-tls, ...);
#  2. checks the linked binary: AWS-LC-FIPS symbols present (and its FIPS_mode), no symbol of
#     the non-FIPS aws-lc-sys that rustls' `fips` feature also compiles, no ring, no libssl
#     or libcrypto.
# Usage: scripts/check-fips-deps.sh [BINARY]   (default: builds target/fips/release/cmkfs)
set -eu
cd "$(dirname "$0")/.."
fail=0
bad() { echo "check-fips-deps: FAIL: $*" >&2; fail=1; }

tree=$(cargo tree -e features -e normal -e build --features fips --prefix none 2>/dev/null |
    sed -n 's/^\([A-Za-z0-9_-]*\) v\([^ ]*\).*/\1 \2/p' | sort -u)
[ -n "$tree" ] || { echo "check-fips-deps: cargo tree printed nothing" >&2; exit 2; }

# Crates that implement cryptography, and why each may be in the fips build.
allowed() {
    case "$1" in
        aws-lc-fips-sys) echo "AWS-LC-FIPS: the FIPS 140-3 validated module; every data, key and TLS operation" ;;
        aws-lc-rs) echo "Rust API over the module (built with its fips feature)" ;;
        aws-lc-sys) echo "compiled because rustls' aws_lc_rs feature names it; NOT linked (symbol check below)" ;;
        rustls) echo "TLS protocol; its crypto is the FIPS provider on aws-lc-rs (provider.fips() checked at run time)" ;;
        rustls-webpki) echo "certificate path validation; signatures verified by aws-lc-rs (aws-lc-rs-fips feature)" ;;
        rustls-pki-types|rustls-native-certs|rustls-platform-verifier|hyper-rustls|tokio-rustls) echo "TLS plumbing, no primitives" ;;
        openssl-probe) echo "finds the system CA bundle path; links no OpenSSL" ;;
        subtle) echo "constant-time comparisons for rustls; no cipher" ;;
        zeroize|zeroize_derive) echo "wipes secrets; no cipher" ;;
        rand|rand_core|getrandom|chacha20) echo "azure_core retry jitter only (typespec_client_core: rand::random::<u8>() added to a back-off delay); no key, IV or secret" ;;
        *) return 1 ;;
    esac
}
denied() {
    case "$1" in
        ring|openssl|openssl-sys|boring|boring-sys|native-tls|tokio-native-tls|hyper-tls|\
        aes-gcm|aes-gcm-siv|aes-siv|chacha20poly1305|xsalsa20poly1305|crypto_box|ccm|eax|ocb3|\
        aes|aes-kw|rsa|p256|p384|ecdsa|ed25519-dalek|x25519-dalek|curve25519-dalek|sodiumoxide|\
        libsodium-sys|orion|rustls-rustcrypto|rustls-openssl|rustls-post-quantum|mbedtls|wolfssl) return 0 ;;
        *) return 1 ;;
    esac
}
crypto_like() {
    case "$1" in
        *aes*|*gcm*|*chacha*|*poly1305*|*rsa*|*ring*|*ssl*|*tls*|*crypt*|*cipher*|*hmac*|*hkdf*|\
        *sha1*|*sha2*|*sha3*|*digest*|*aead*|*ecdsa*|*dalek*|*x25519*|*p256*|*p384*|*sodium*|\
        *aws-lc*|*webpki*|subtle|zeroize*|rand*|getrandom|*kw) return 0 ;;
        *) return 1 ;;
    esac
}

echo "Crypto crates in the fips build (cargo tree -e features --features fips, normal+build edges):"
echo "$tree" | while read -r name version; do
    case "$name" in toml_parser|toml_writer|string*|substring*) continue ;; esac
    if denied "$name"; then
        printf '  %-26s %-10s DENIED: another cryptographic implementation\n' "$name" "$version"
    elif crypto_like "$name"; then
        if why=$(allowed "$name"); then
            printf '  %-26s %-10s %s\n' "$name" "$version" "$why"
        else
            printf '  %-26s %-10s UNKNOWN crypto-looking crate: review and list it in this script\n' "$name" "$version"
        fi
    fi
done
for n in $(echo "$tree" | awk '{print $1}'); do
    if denied "$n"; then bad "crate $n is in the fips build's dependency tree"; fi
    if crypto_like "$n" && ! denied "$n" && ! allowed "$n" >/dev/null; then
        case "$n" in toml_parser|toml_writer) ;; *) bad "crate $n looks cryptographic and is not reviewed" ;; esac
    fi
done
for c in aws-lc-rs rustls; do
    cargo tree -e features -e normal -e build --features fips -i "$c" 2>/dev/null |
        grep -q "$c feature \"fips\"" || bad "$c is not built with its fips feature"
done

bin=${1:-}
if [ -z "$bin" ]; then
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/fips} cargo build --quiet --release --features fips
    bin=${CARGO_TARGET_DIR:-target/fips}/release/cmkfs
fi
echo "Linked binary $bin:"
syms=$(nm "$bin" 2>/dev/null || true)
[ -n "$syms" ] || bad "no symbol table in $bin (nm missing, or stripped with --strip=all)"
fips_syms=$(printf '%s\n' "$syms" | grep -c ' aws_lc_fips_[0-9_]*_' || true)
other_awslc=$(printf '%s\n' "$syms" | grep ' aws_lc_[0-9]' | grep -vc ' aws_lc_fips_' || true)
ring_syms=$(printf '%s\n' "$syms" | grep -c ' ring_core_' || true)
openssl_syms=$(printf '%s\n' "$syms" | grep -Ec ' (SSL_CTX_new|OPENSSL_init_ssl)$' || true)
echo "  AWS-LC-FIPS symbols: $fips_syms; non-FIPS aws-lc-sys symbols: $other_awslc; ring: $ring_syms; OpenSSL libssl: $openssl_syms"
[ "$fips_syms" -gt 0 ] || bad "no AWS-LC-FIPS symbols in $bin"
printf '%s\n' "$syms" | grep -q ' aws_lc_fips_[0-9_]*_FIPS_mode$' || bad "FIPS_mode of AWS-LC-FIPS is not linked"
[ "$other_awslc" -eq 0 ] || bad "the non-FIPS aws-lc-sys is linked into $bin"
[ "$ring_syms" -eq 0 ] || bad "ring is linked into $bin"
[ "$openssl_syms" -eq 0 ] || bad "OpenSSL's libssl is linked into $bin"
if ldd "$bin" 2>/dev/null | grep -Eq 'lib(ssl|crypto)\.so'; then bad "$bin loads a shared libssl/libcrypto"; fi
"$bin" --version | grep -qx 'FIPS mode: on' || bad "$bin --version does not say FIPS mode: on"
"$bin" --version | sed 's/^/  /'
if [ "$fail" -ne 0 ]; then exit 1; fi
echo "check-fips-deps: OK: AWS-LC-FIPS is the only cryptographic implementation linked"
