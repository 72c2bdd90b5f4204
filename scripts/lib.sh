# lib.sh — shell functions shared by scripts/up and scripts/test: logging,
# installing missing Debian packages, configuring and building with CMake,
# checking ports and waiting on a condition with a deadline.
#
# Sourced, never run. Callers use `set -euo pipefail`; every function here
# returns a status instead of exiting, except cb_die, whose job is to exit.
# shellcheck shell=bash

# The repository root: the parent of the folder this file is in.
CB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck disable=SC2034  # used by the scripts that source this file
# The packages a build needs on Debian 12 (bookworm). clang and its runtime
# (libFuzzer, the sanitizers' runtime for clang) are needed by scripts/test only.
CB_BUILD_PACKAGES=(build-essential cmake pkg-config
    libzmq3-dev libczmq-dev protobuf-c-compiler libprotobuf-c-dev
    libhiredis-dev libmicrohttpd-dev libcmocka-dev libjansson-dev
    libcurl4-openssl-dev libgeos-dev libsodium-dev
    redis-server python3 curl procps)
# python3-jsonschema: test_open311.py validates answers against the Open311 schemas.
# shellcheck disable=SC2034
CB_TEST_PACKAGES=(clang libclang-rt-14-dev python3-jsonschema)

cb_log() { printf '%s %s\n' "$(date '+%H:%M:%S')" "$*"; }
cb_warn() { printf '%s warning: %s\n' "$(date '+%H:%M:%S')" "$*" >&2; }
cb_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# cb_jobs: how many compile jobs; CIVICBUS_JOBS overrides the core count.
cb_jobs() { echo "${CIVICBUS_JOBS:-$(nproc 2>/dev/null || echo 2)}"; }

# cb_install_packages PKG...: installs those of PKG that dpkg does not list as
# installed, through sudo when not root, without questions. Runs
# `apt-get update` only when something is missing. Returns non-zero when the
# install fails or cannot be attempted.
cb_install_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        cb_warn "not a Debian system: make sure these are installed: $*"
        return 0
    fi
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            printf 'error: these packages are missing and there is no sudo to install them: %s\n' \
                "${missing[*]}" >&2
            return 1
        fi
        # -n when there is no terminal to ask for a password on (CI, pipes).
        if [ -t 0 ]; then sudo=(sudo); else sudo=(sudo -n); fi
    fi
    cb_log "installing missing packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
               apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# cb_build BUILD_DIR [CMAKE_ARGS...]: configures BUILD_DIR from the repository
# root (always passing the given options, so a changed option takes effect)
# and builds it with cb_jobs jobs.
cb_build() {
    local dir=$1; shift
    cb_log "configuring $dir"
    cmake -S "$CB_ROOT" -B "$dir" "$@" || return 1
    cb_log "building $dir with $(cb_jobs) jobs"
    cmake --build "$dir" --parallel "$(cb_jobs)"
}

# cb_port_busy PORT: true when something accepts TCP connections on
# 127.0.0.1:PORT (bash's /dev/tcp; no extra tool needed).
cb_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# cb_wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it
# succeeds (returns 0) or SECONDS have passed (returns 1 and says what it
# waited for).
cb_wait_until() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$deadline" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    cb_warn "gave up after ${seconds}s waiting for $what"
    return 1
}
