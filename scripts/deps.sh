#!/usr/bin/env bash
# Installs the Debian packages bulkhead needs, when they are missing.
# Usage: scripts/deps.sh [--bench]
set -euo pipefail

pkgs=(build-essential cmake pkg-config python3 curl
      libuv1-dev node-llhttp libjwt-dev libsqlite3-dev libcurl4-openssl-dev
      libjansson-dev libinih-dev libsodium-dev libsystemd-dev libssl-dev)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(nginx-light wrk)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
