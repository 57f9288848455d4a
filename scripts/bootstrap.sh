#!/usr/bin/env bash
# Set up everything the engine needs, then play the demo or run the tests.
#
#   bash scripts/bootstrap.sh demo   # system packages, .venv, then 20 s of "focus"
#   bash scripts/bootstrap.sh test   # system packages, .venv, then ruff + pytest
#   bash scripts/bootstrap.sh setup  # system packages and .venv only
#   bash scripts/bootstrap.sh bench  # also scsynth, then benchmarks/*.py
#
# Idempotent: packages already present are not reinstalled, apt-get update runs
# only when something is missing, and pip runs only when pyproject.toml changed.
# Tests and the sound-card-less demo run against a private JACK server with the
# dummy backend, under a unique name; only that server is ever stopped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
VENV="$REPO_ROOT/.venv"
SAMPLE_RATE=48000
JACK_PERIOD_FRAMES=128
SYSTEM_PACKAGES=(libportaudio2 jackd2 liblo-tools libsndfile1)
# Only the benchmarks need SuperCollider's server (the reference they compare to).
BENCH_PACKAGES=(supercollider-server)

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- system packages ------------------------------------------------------------

python_bin() {
    command -v python3 || command -v python || die "no python3 on PATH"
}

python_has_venv() {
    "$(python_bin)" -c 'import ensurepip, venv' >/dev/null 2>&1
}

missing_debian_packages() {
    local package
    for package in "${SYSTEM_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null \
            | grep -q 'install ok installed'; then
            printf '%s\n' "$package"
        fi
    done
    # Debian's own python3 needs python3-venv for `python3 -m venv`.
    if ! python_has_venv; then
        printf '%s\n' python3-venv
    fi
}

have_system_dependencies() {
    command -v jackd >/dev/null && command -v jack_lsp >/dev/null \
        && ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' \
        && ldconfig -p 2>/dev/null | grep -q 'libsndfile\.so\.1' \
        && python_has_venv
}

install_system_packages() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null \
        && command -v dpkg-query >/dev/null; then
        local missing
        mapfile -t missing < <(missing_debian_packages)
        if ((${#missing[@]} == 0)); then
            return
        fi
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        return
    fi
    if have_system_dependencies; then
        return
    fi
    log "cannot install system packages here (not root, or no apt-get)."
    log "install these, then run this script again:"
    log "  Debian/Ubuntu: sudo apt-get install --no-install-recommends" \
        "${SYSTEM_PACKAGES[*]} python3-venv"
    log "  Fedora:        sudo dnf install portaudio jack-audio-connection-kit" \
        "liblo libsndfile"
    log "  macOS:         brew install portaudio jack liblo libsndfile"
    log "continuing with what is present"
}

# --- Python environment -------------------------------------------------------

setup_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$(python_bin)" -m venv "$VENV"
    fi
    local stamp="$VENV/.bootstrap-installed" wanted
    wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ -f "$stamp" && $(cat "$stamp") == "$wanted" ]]; then
        return
    fi
    log "installing the engine into $VENV (pip install -e '.[dev]')"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
    printf '%s\n' "$wanted" >"$stamp"
}

# --- a private JACK dummy server ----------------------------------------------

JACK_PID=""
JACK_LOG=""

stop_jack() {
    if [[ -n "$JACK_PID" ]] && kill -0 "$JACK_PID" 2>/dev/null; then
        kill "$JACK_PID" 2>/dev/null || true
        local waited=0
        while kill -0 "$JACK_PID" 2>/dev/null && ((waited < 50)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -9 "$JACK_PID" 2>/dev/null || true
        wait "$JACK_PID" 2>/dev/null || true
    fi
    JACK_PID=""
    if [[ -n "$JACK_LOG" ]]; then
        rm -f "$JACK_LOG"
    fi
}

start_jack() {
    command -v jackd >/dev/null || die "jackd is not installed (package jackd2)"
    local name="soundscape-$1-$$"
    JACK_LOG=$(mktemp -t soundscape-jackd.XXXXXX)
    export JACK_NO_START_SERVER=1 # nothing here may auto-spawn another server
    # 64 ports (jackd's default is 2048): every client maps and locks the
    # server's segment, 107 MB at the default, 40 MB at 64.
    jackd -n "$name" -p 64 -d dummy -r "$SAMPLE_RATE" -p "$JACK_PERIOD_FRAMES" \
        </dev/null >"$JACK_LOG" 2>&1 &
    JACK_PID=$!
    trap stop_jack EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local tries
    for ((tries = 0; tries < 100; tries++)); do # at most ~10 s
        if ! kill -0 "$JACK_PID" 2>/dev/null; then
            cat "$JACK_LOG" >&2
            die "jackd exited at start"
        fi
        if jack_lsp -s "$name" 2>/dev/null | grep -q 'system:playback'; then
            export JACK_DEFAULT_SERVER="$name"
            log "JACK dummy server '$name' is up (pid $JACK_PID)"
            return
        fi
        sleep 0.1
    done
    cat "$JACK_LOG" >&2
    die "JACK server '$name' did not answer within 10 s"
}

# A real output: a JACK server already running under the default name, or a
# PortAudio output device outside JACK (a sound card, PulseAudio, PipeWire).
have_real_audio_device() {
    if command -v jack_lsp >/dev/null \
        && JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1; then
        return 0
    fi
    "$VENV/bin/python" - <<'PY' 2>/dev/null
import sys

from engine.rt.audio_io import JACK_HOST_API_NAME, list_output_devices

real = [d for d in list_output_devices() if d["host_api"] != JACK_HOST_API_NAME]
sys.exit(0 if real else 1)
PY
}

# --- commands -------------------------------------------------------------------

run_tests() {
    start_jack test
    local ruff_status=0 pytest_status=0
    "$VENV/bin/ruff" check . || ruff_status=$?
    "$VENV/bin/python" -m pytest || pytest_status=$?
    if ((pytest_status != 0)); then
        return "$pytest_status"
    fi
    return "$ruff_status"
}

run_benchmarks() {
    SYSTEM_PACKAGES+=("${BENCH_PACKAGES[@]}")
    install_system_packages
    command -v scsynth >/dev/null \
        || log "scsynth not found: the scsynth columns will be empty"
    "$VENV/bin/python" benchmarks/bench_engine.py
    "$VENV/bin/python" benchmarks/bench_realtime.py
    "$VENV/bin/python" benchmarks/bench_osc.py
    log "results: benchmarks/out/*.json; keep the tables in benchmarks/RESULTS.md"
}

run_demo() {
    if have_real_audio_device; then
        log "playing on the default audio device"
    else
        log "no audio device found: playing into a JACK dummy server (silent)"
        start_jack demo
    fi
    "$VENV/bin/soundscape" play focus --seconds 20
}

main() {
    (($# == 1)) || usage
    case "$1" in
        demo | test | setup | bench) ;;
        *) usage ;;
    esac
    install_system_packages
    setup_venv
    case "$1" in
        demo) run_demo ;;
        test) run_tests ;;
        bench) run_benchmarks ;;
        setup) ;;
    esac
}

main "$@"
