#!/usr/bin/env bash
# Build the offline demo image `skein-demo/web:latest` without any registry.
#
# The image is a minimal busybox rootfs (busybox taken from Debian's
# `busybox-static` package) imported with `docker import`. Its default command
# writes "hello from <hostname>" to /www/index.html and serves /www with
# busybox httpd on port 80.
#
# Usage: scripts/build-demo-image.sh [--force] [--no-verify]
#   --force       rebuild even if the image already exists
#   --no-verify   skip the post-build smoke check (run + HTTP GET)
#
# Environment:
#   SKEIN_DEMO_IMAGE   image reference to build (default skein-demo/web:latest)
#
# Idempotent: when the image already exists with the current recipe label (and
# no --force) it exits at once.
# Works from any cwd. Needs: docker, dpkg-deb, and either an installed
# busybox-static package or apt-get (the .deb is fetched with
# `apt-get download`; the package lists are refreshed once if that fails).
set -euo pipefail

IMAGE="${SKEIN_DEMO_IMAGE:-skein-demo/web:latest}"
# Bump when the image contents or config change: an existing image with another
# recipe label is rebuilt without --force.
RECIPE=2
FORCE=0
VERIFY=1

log() { printf '[build-demo-image] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --force) FORCE=1 ;;
    --no-verify) VERIFY=0 ;;
    -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon ('docker info' fails)"

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    have="$(docker image inspect --format '{{index .Config.Labels "skein.demo.recipe"}}' "$IMAGE" 2>/dev/null || true)"
    if [ "$have" = "$RECIPE" ]; then
        log "$IMAGE already present ($(docker image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-19)); use --force to rebuild"
        exit 0
    fi
    log "$IMAGE exists but was built by an older recipe ('$have' != '$RECIPE'); rebuilding"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/skein-demo-image.XXXXXX")"
VERIFY_CID=""
cleanup() {
    if [ -n "$VERIFY_CID" ]; then
        docker rm -f "$VERIFY_CID" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. a static busybox ------------------------------------------------------
BUSYBOX=""
if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)" = "install ok installed" ] &&
    [ -x /bin/busybox ]; then
    BUSYBOX=/bin/busybox
    log "using installed busybox-static (/bin/busybox)"
else
    command -v apt-get >/dev/null 2>&1 || die "busybox-static is not installed and apt-get is not available"
    command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found"
    mkdir -p "$WORK/deb"
    # apt-get download as root drops privileges to `_apt`, which must be able to
    # write the target directory; otherwise it only warns, but be tidy.
    chmod 777 "$WORK/deb"
    fetch() { (cd "$WORK/deb" && apt-get download -q busybox-static) >"$WORK/apt.log" 2>&1; }
    if ! fetch; then
        if [ "$(id -u)" = 0 ]; then
            log "apt-get download failed; running apt-get update once and retrying"
            apt-get update -q >"$WORK/apt-update.log" 2>&1 || {
                cat "$WORK/apt-update.log" >&2
                die "apt-get update failed"
            }
            fetch || {
                cat "$WORK/apt.log" >&2
                die "apt-get download busybox-static failed"
            }
        else
            cat "$WORK/apt.log" >&2
            die "apt-get download busybox-static failed (as non-root: run 'apt-get update' or install busybox-static)"
        fi
    fi
    debs=("$WORK"/deb/busybox-static_*.deb)
    deb="${debs[0]}"
    [ -f "$deb" ] || die "apt-get download produced no busybox-static .deb"
    log "fetched $(basename "$deb")"
    dpkg-deb -x "$deb" "$WORK/pkg"
    BUSYBOX="$WORK/pkg/bin/busybox"
    [ -x "$BUSYBOX" ] || die "no bin/busybox in $(basename "$deb")"
fi

# --- 2. the rootfs --------------------------------------------------------------
R="$WORK/rootfs"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,www,root,proc,sys,dev,var/log,home}
install -m 0755 "$BUSYBOX" "$R/bin/busybox"

applets="$("$BUSYBOX" --list)"
n=0
for a in $applets; do
    case "$a" in busybox | */* | '') continue ;; esac
    ln -sf busybox "$R/bin/$a"
    n=$((n + 1))
done
# A few well-known absolute paths scripts tend to use.
ln -sf ../../bin/busybox "$R/usr/bin/env"
for a in httpd sh wget nc sleep cat echo hostname; do
    [ -e "$R/bin/$a" ] || die "busybox lacks the '$a' applet"
done
log "rootfs: busybox with $n applets"

mkdir -p "$R/tmp" && chmod 1777 "$R/tmp"
cat >"$R/www/index.html" <<'EOF'
skein demo placeholder (replaced at container start)
EOF
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nobody:x:65534:
EOF
: >"$R/etc/hosts"
: >"$R/etc/resolv.conf"
echo skein-demo >"$R/etc/hostname"
chmod 0700 "$R/root"

# --- 3. import ----------------------------------------------------------------
# httpd runs as a child of a PID-1 shell that forwards SIGTERM/SIGINT: a bare
# `exec httpd` as PID 1 ignores SIGTERM (no handler), so every `docker stop`
# would wait its full 10 s grace period before SIGKILL. With the trap a stop
# takes ~0.1 s and the container exits with 143 (as if killed by SIGTERM); if
# httpd dies on its own its exit code is the container's.
# shellcheck disable=SC2016  # $(hostname), $! and $pid are for the container's shell
CMD='CMD ["/bin/sh","-c","echo \"hello from $(hostname)\" > /www/index.html; /bin/httpd -f -v -p 80 -h /www & pid=$!; trap \"kill $pid; wait $pid; exit 143\" TERM INT; wait $pid"]'
old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
id="$(tar -C "$R" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
        --change 'EXPOSE 80' \
        --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' \
        --change "$CMD" \
        --change 'LABEL skein.demo=1' \
        --change "LABEL skein.demo.recipe=$RECIPE" \
        - "$IMAGE")"
log "imported $IMAGE ($(printf '%s' "$id" | cut -c1-19))"
if [ -n "$old_id" ] && [ "$old_id" != "$id" ]; then
    # Drop the now untagged previous build (best effort: a container may use it).
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi

# --- 4. verify ----------------------------------------------------------------
if [ "$VERIFY" = 1 ]; then
    VERIFY_CID="$(docker run -d -p 127.0.0.1::80 --label skein.test=build-demo-image "$IMAGE")"
    hostport="$(docker port "$VERIFY_CID" 80/tcp | head -n1)"
    want="hello from ${VERIFY_CID:0:12}"
    got=""
    for _ in $(seq 1 50); do
        if command -v curl >/dev/null 2>&1; then
            got="$(curl -fsS --noproxy '*' --max-time 2 "http://$hostport/" 2>/dev/null || true)"
        else
            # No curl on the host: ask busybox wget inside the container.
            got="$(docker exec "$VERIFY_CID" wget -qO- http://127.0.0.1:80/ 2>/dev/null || true)"
        fi
        [ "$got" = "$want" ] && break
        sleep 0.2
    done
    if [ "$got" != "$want" ]; then
        docker logs "$VERIFY_CID" >&2 || true
        die "smoke check failed: GET http://$hostport/ returned '$got', expected '$want'"
    fi
    # SIGTERM must end it promptly (exit 143), not after the 10 s stop timeout
    # with SIGKILL (137).
    docker stop -t 10 "$VERIFY_CID" >/dev/null
    code="$(docker inspect --format '{{.State.ExitCode}}' "$VERIFY_CID")"
    [ "$code" = 143 ] || die "smoke check failed: exit code after docker stop is $code, expected 143"
    log "verified: GET http://$hostport/ -> '$got'; docker stop -> exit 143"
fi
log "done"
