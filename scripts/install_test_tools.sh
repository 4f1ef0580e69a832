#!/usr/bin/env bash
# Installs the Debian tools the deployment tests drive, when missing:
# docker-compose (validates the compose file without a daemon), prometheus and
# promtool, redis-server, chromium with chromium-driver (the playground's browser test drives
# headless Chromium) and xz (the GPU check's dry run). Needs root (or sudo) only when something is
# missing.
set -euo pipefail
need=()
for tool in docker-compose:docker-compose prometheus:prometheus promtool:prometheus redis-server:redis-server \
  chromium:chromium chromedriver:chromium-driver xz:xz-utils; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_test_tools: need root to apt-get install $pkgs" >&2; exit 1; }
  sudo=sudo
fi
echo "install_test_tools: apt-get install $pkgs"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
