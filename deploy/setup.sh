#!/usr/bin/env bash
# The set-up behind `make run` and `make test` on a fresh Debian machine: installs the Debian
# packages that are missing when run as root; otherwise prints the one command that installs them
# and exits 1. Then checks what it cannot install (Rust, the Docker Engine).
#
#   deploy/setup.sh run    # what building and `make run` need
#   deploy/setup.sh test   # also every tool the test suite drives (and schemathesis, from PyPI)
#
# With CI=true a missing Docker Engine, dig or etcd is an error, as the tests then fail rather
# than skip. POSEIDON_CACHE (default /var/cache/poseidon as root, else ~/.cache/poseidon) holds
# the schemathesis venv.
set -euo pipefail

what=${1:-}
case "$what" in
run | test) ;;
*)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac

# Building: rocksdb's bindgen needs libclang; etcd-client's build needs protoc and the
# google/protobuf/*.proto it imports. The quick start makes an image from busybox and calls curl.
pkgs=(libclang-dev protobuf-compiler libprotobuf-dev busybox-static curl)
if [[ $what == test ]]; then
    pkgs+=(
        dnsutils                        # dig, the DNS tests
        wrk haproxy                     # the mesh bench and its stock anchor
        etcd-server                     # /usr/bin/etcd, the HA tests
        docker-compose                  # the Compose cluster test (deploy/compose.yaml)
        chromium chromium-driver python3-selenium # the dashboard's browser test
        python3-venv                    # the venv schemathesis is installed into
    )
fi

need=()
for p in "${pkgs[@]}"; do
    # docker-compose: a Compose v2 plugin (`docker compose`) serves as well.
    if [[ $p == docker-compose ]] && docker compose version >/dev/null 2>&1; then
        continue
    fi
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done

if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]]; then
        echo "setup: installing ${need[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${need[@]}" ||
            { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
    else
        echo "setup: missing Debian packages; as root, run:" >&2
        echo "apt-get install -y --no-install-recommends ${need[*]}" >&2
        exit 1
    fi
fi

command -v cargo >/dev/null 2>&1 ||
    { echo "setup: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
    if [[ $what == run || ${CI:-} == true ]]; then
        echo "setup: the Docker Engine is unreachable (/var/run/docker.sock); start it first" >&2
        exit 1
    fi
    echo "setup: the Docker Engine is unreachable: the Docker tests will say SKIPPED" >&2
fi

if [[ $what == test ]]; then
    if [[ ${CI:-} == true ]]; then
        command -v dig >/dev/null 2>&1 || { echo "CI: dig (dnsutils) is missing" >&2; exit 1; }
        [[ -x /usr/bin/etcd ]] || { echo "CI: /usr/bin/etcd (etcd-server) is missing" >&2; exit 1; }
    fi
    # schemathesis (tests/schemathesis.rs) in its own venv, out of the system's Python; the
    # Makefile hands its path to the test as POSEIDON_SCHEMATHESIS.
    if [[ $(id -u) == 0 ]]; then cache=${POSEIDON_CACHE:-/var/cache/poseidon}; else cache=${POSEIDON_CACHE:-$HOME/.cache/poseidon}; fi
    venv=$cache/schemathesis-venv
    if [[ ! -x $venv/bin/st ]]; then
        echo "setup: installing schemathesis into $venv" >&2
        mkdir -p "$cache"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
    fi
fi
echo "setup: ready for make $what" >&2
