#!/usr/bin/env bash
# Build the Debian 12 node image (systemd as PID 1) for the local testbed.
# The tag carries a hash of this recipe, so the image is rebuilt only when it
# is missing or the recipe changed. The apt mirror and the extra CA
# certificates are the host's own: nothing here names a mirror.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# openssh-server: Ansible reaches the nodes over SSH, as it reaches GCP instances.
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,sudo,ca-certificates,iproute2,procps,curl,openssh-server
# The login Ansible uses, as on a cloud image: an unprivileged user with
# passwordless sudo, its key mounted by the local_nodes role.
NODE_USER=ansible
MASKED_UNITS=(
  getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service
  systemd-remount-fs.service dev-hugepages.mount sys-fs-fuse-connections.mount
  systemd-firstboot.service systemd-modules-load.service proc-sys-fs-binfmt_misc.automount
  systemd-binfmt.service apt-daily.timer apt-daily-upgrade.timer
)

# The tag hashes what goes into the image (package list, masked units and the
# build steps), not comments or the rest of this script.
recipe_hash() { { declare -p PACKAGES MASKED_UNITS NODE_USER; declare -f build configure_ssh; } | sha256sum | cut -c1-12; }

# Every node gets host keys of its own at first boot (the ones debootstrap
# made would be shared by all nodes), key-only logins for NODE_USER, and no
# root login. Authorized keys come from /etc/ssh/authorized_keys/<user>,
# which local_nodes mounts read-only from the controller's state folder.
configure_ssh() {
  local rootfs="$1"
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d" "$rootfs/etc/ssh/authorized_keys"
  cat >"$rootfs/etc/systemd/system/ssh.service.d/host-keys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
  cat >"$rootfs/etc/ssh/sshd_config.d/lab.conf" <<'CONF'
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys/%u
CONF
  chroot "$rootfs" useradd --create-home --shell /bin/bash "$NODE_USER"
  echo "$NODE_USER ALL=(ALL) NOPASSWD:ALL" >"$rootfs/etc/sudoers.d/$NODE_USER"
  chmod 0440 "$rootfs/etc/sudoers.d/$NODE_USER"
  chroot "$rootfs" systemctl enable ssh.service >/dev/null 2>&1
}

host_sources() {
  # deb822 sources first, then the classic list; only Debian's own archive
  # entries are copied (third-party repositories stay on the host).
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && grep -q '^URIs:' "$f" && grep -qi 'debian' "$f" && echo "$f"
  done
  [[ -s /etc/apt/sources.list ]] && grep -q '^deb ' /etc/apt/sources.list && echo /etc/apt/sources.list
  return 0
}

host_mirror() {
  local f uri
  for f in $(host_sources); do
    if [[ "$f" == *.sources ]]; then
      uri="$(awk '/^URIs:/ {print $2}' "$f" | grep -v -- '-security' | head -1)"
    else
      uri="$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; exit}}' "$f")"
    fi
    [[ -n "$uri" ]] && { echo "$uri"; return 0; }
  done
  die "no Debian mirror found in the host's apt sources"
}

ROOTFS=""
cleanup() { [[ -n "$ROOTFS" ]] && rm -rf "$ROOTFS"; return 0; }
trap cleanup EXIT

build() {
  local rootfs mirror
  rootfs="$(mktemp -d "$WORK/rootfs.XXXXXX")"
  ROOTFS="$rootfs"
  mirror="$(host_mirror)"
  log "debootstrap bookworm into a scratch root (about 90 s)"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $WORK/debootstrap.log"

  rm -f "$rootfs/etc/apt/sources.list"
  local f
  for f in $(host_sources); do
    if [[ "$f" == *.sources ]]; then cp "$f" "$rootfs/etc/apt/sources.list.d/"; else cp "$f" "$rootfs/etc/apt/sources.list"; fi
  done
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  chroot "$rootfs" systemctl mask "${MASKED_UNITS[@]}" >/dev/null 2>&1
  chroot "$rootfs" systemctl set-default multi-user.target >/dev/null
  configure_ssh "$rootfs"
  : > "$rootfs/etc/machine-id"
  chroot "$rootfs" apt-get clean

  log "importing $IMAGE"
  tar -C "$rootfs" --numeric-owner -c . | podman import \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' --change 'ENV container=podman' - "$IMAGE" >/dev/null
}

IMAGE="localhost/mlops-node:$(recipe_hash)"
if ! podman image exists "$IMAGE"; then
  build
fi
echo "$IMAGE" > "$MLOPS_NODE_IMAGE_FILE"
