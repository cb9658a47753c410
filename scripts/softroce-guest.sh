#!/usr/bin/env bash
# Runs a command inside a QEMU guest with Soft-RoCE (rdma_rxe on a dummy netdev, device rxe0,
# IPv4 10.0.2.15), for the verbs path on machines without RDMA hardware. The guest boots
# Debian's own kernel (downloaded once into a cache, never installed on the host) from an
# initramfs made of busybox, iproute2's ip and rdma, the rxe verbs provider, the files given
# with --file and every library they need. No NIC: the guest is hermetic.
#
#   scripts/softroce-guest.sh [--timeout S] [--file PATH]... [--memory M] [--mtu N] [--kernel-suite SUITE] -- COMMAND...
#
# --kernel-suite boots the linux-image-amd64 of another Debian suite instead (e.g.
# trixie-backports: rxe learned network namespaces in Linux 6.16; 6.1's rxe sends and receives
# only in the initial one), fetched with a private apt state in the cache, the host's untouched.
#
# COMMAND runs under the guest's /bin/sh (files keep their host paths). Exit status: COMMAND's,
# or 124 when the guest ran out of time, 125 when it did not boot (twice) or never reported.
# Cache: $RFAAS_GUEST_CACHE (default ~/.cache/rfaas-guest). Needs: qemu-system-x86,
# busybox-static, cpio, rdma-core, ibverbs-providers, iproute2 (installed here when missing).
set -euo pipefail
limit=600
memory=1G
mtu=1500  # of the netdev under rxe0: 1500 gives a RoCE MTU of 1024, 9000 (jumbo frames) 4096
files=()
suite=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --timeout) limit=$2; shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --mtu) mtu=$2; shift 2 ;;
    --kernel-suite) suite=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "softroce-guest.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "usage: softroce-guest.sh [--timeout S] [--file PATH]... -- COMMAND..." >&2; exit 2; }

# Its own packages, installed when missing (apt lists refreshed once if needed).
need=()
for p in qemu-system-x86 busybox-static cpio rdma-core ibverbs-providers iproute2 xz-utils file; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || need+=("$p")
done
if [[ ${#need[@]} -gt 0 ]]; then
  echo "softroce-guest.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

cache=${RFAAS_GUEST_CACHE:-$HOME/.cache/rfaas-guest}
mkdir -p "$cache"

# --- the kernel: Debian's, extracted into the cache -------------------------------------------
apt_opts=()
if [[ -n "$suite" ]]; then  # its own sources and lists under the cache; the host's apt is not touched
  aptdir="$cache/apt-$suite"
  mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial"
  echo "deb http://deb.debian.org/debian $suite main" >"$aptdir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir" -o Dir::State::Status=/dev/null)
fi
kernel_package() {
  apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true
}
kpkg=$(kernel_package)
if [[ -z "$kpkg" ]]; then  # no package lists yet on a fresh machine
  apt-get "${apt_opts[@]}" update >/dev/null 2>&1 || true
  kpkg=$(kernel_package)
fi
[[ -n "$kpkg" ]] || { echo "softroce-guest.sh: cannot tell which kernel package linux-image-amd64 names" >&2; exit 125; }
kver=${kpkg#linux-image-}
kroot="$cache/$kpkg"
if [[ ! -f "$kroot/.ready" ]]; then
  echo "softroce-guest.sh: fetching $kpkg (once, into $cache)" >&2
  rm -rf "$kroot" && mkdir -p "$kroot/debs"
  # Newer Debian kernels split the image into linux-binary-* (vmlinuz) and linux-modules-*.
  pkgs=("$kpkg")
  for p in "linux-binary-$kver" "linux-modules-$kver"; do
    apt-cache "${apt_opts[@]}" depends "$kpkg" 2>/dev/null | grep -q "Depends: $p\$" && pkgs+=("$p")
  done
  (cd "$kroot/debs" && { apt-get "${apt_opts[@]}" download "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get "${apt_opts[@]}" update >/dev/null && apt-get "${apt_opts[@]}" download "${pkgs[@]}" >/dev/null; }; })
  for d in "$kroot/debs/"*.deb; do dpkg -x "$d" "$kroot"; done
  rm -rf "$kroot/debs"
  for d in "$kroot/lib/modules" "$kroot/usr/lib/modules"; do
    [[ -d "$d/$kver" ]] && busybox depmod -b "${d%/lib/modules}" "$kver" 2>/dev/null || true
  done
  touch "$kroot/.ready"
fi
kernel="$kroot/boot/vmlinuz-$kver"
moddir="$kroot/lib/modules/$kver"
[[ -f "$kernel" ]] || kernel="$kroot/usr/lib/modules/$kver/vmlinuz"
[[ -d "$moddir" ]] || moddir="$kroot/usr/lib/modules/$kver"

# --- the initramfs -----------------------------------------------------------------------------
work=$(mktemp -d /tmp/rfaas-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules,usr/lib/x86_64-linux-gnu/libibverbs}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
done

copy_file() {  # keeps the host path
  local f=$1
  [[ -e "$root$f" ]] && return 0
  mkdir -p "$root$(dirname "$f")"
  cp -L "$f" "$root$f"
}
copy_with_libs() {
  local f=$1 lib
  copy_file "$f"
  # "name => /path (addr)" lines, and the loader's own "/lib64/ld-linux-x86-64.so.2 (addr)".
  for lib in $(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    copy_file "$lib"
  done
}
for tool in /usr/sbin/ip /sbin/ip /usr/bin/rdma /sbin/rdma /usr/sbin/rdma; do
  [[ -x "$tool" ]] && copy_with_libs "$(readlink -f "$tool")" && ln -sf "$(readlink -f "$tool")" "$root/bin/$(basename "$tool")"
done
for provider in /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so; do copy_with_libs "$provider"; done
mkdir -p "$root/etc/libibverbs.d"
cp /etc/libibverbs.d/rxe.driver "$root/etc/libibverbs.d/"
copy_file "$(readlink -f /lib/x86_64-linux-gnu/libgcc_s.so.1)"
ln -sf "$(readlink -f /lib/x86_64-linux-gnu/libgcc_s.so.1)" "$root/lib/x86_64-linux-gnu/libgcc_s.so.1" 2>/dev/null || true
for f in "${files[@]}"; do
  f=$(readlink -f "$f")
  if file -L "$f" 2>/dev/null | grep -q ELF || head -c 4 "$f" | grep -q ELF; then copy_with_libs "$f"; else copy_file "$f"; fi
done

# veth: for namespaces joined by a veth pair (verbs-tests.sh); ib_uverbs_support: newer kernels.
modules="crc32_generic configfs ib_core ib_uverbs_support ib_uverbs ib_umad udp_tunnel ip6_udp_tunnel rdma_rxe ib_cm iw_cm rdma_cm rdma_ucm dummy veth"
for m in $modules; do
  path=$(find "$moddir" -name "$m.ko*" | head -n 1)
  [[ -n "$path" ]] || continue  # built in
  case "$path" in
    *.xz) xz -dc "$path" >"$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$path" >"$root/lib/modules/$m.ko" ;;
    *) cp "$path" "$root/lib/modules/$m.ko" ;;
  esac
done

printf '%s\n' "$*" >"$root/command.sh"
cat >"$root/init" <<EOF
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for m in $modules; do [ -f /lib/modules/\$m.ko ] && insmod /lib/modules/\$m.ko 2>/dev/null; done
ip link set lo up
ip link add eth0 type dummy
ip link set eth0 mtu $mtu
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
rdma link add rxe0 type rxe netdev eth0
i=0
while [ \$i -lt 200 ]; do
  grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null && break
  sleep 0.1; i=\$((i + 1))
done
echo "RFAAS-GUEST-BOOTED"
cd /tmp
sh /command.sh
echo "RFAAS-GUEST-EXIT=\$?"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")

# --- boot ---------------------------------------------------------------------------------------
# Under TCG a boot very rarely stalls before init runs (no console output at all): a boot that
# has not reached init within $boot_limit seconds is killed and tried once more.
console="$work/console.log"
boot_limit=${RFAAS_GUEST_BOOT_LIMIT:-240}
boot() {
  : >"$console"
  timeout --kill-after=10 "$limit" qemu-system-x86_64 -accel tcg -cpu max -m "$memory" -smp 2 -nodefaults \
    -display none -serial "file:$console" -no-reboot -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 oops=panic rdinit=/init" </dev/null &
  local pid=$! start=$SECONDS shown=0 booted=0 rc=0
  tail -n +1 -f "$console" --pid=$pid &
  local tailer=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [[ $booted -eq 0 ]]; then
      if grep -aq RFAAS-GUEST-BOOTED "$console"; then booted=1
      elif (( SECONDS - start > boot_limit )); then
        echo "softroce-guest.sh: no init after ${boot_limit} s; stopping this boot" >&2
        kill "$pid" 2>/dev/null || true
      fi
    fi
    sleep 1
  done
  wait "$pid" || rc=$?
  wait "$tailer" 2>/dev/null || true
  return $rc
}
rc=0
for attempt in 1 2; do
  rc=0
  boot || rc=$?
  grep -aq RFAAS-GUEST-BOOTED "$console" && break
  [[ $attempt -eq 1 ]] && echo "softroce-guest.sh: the guest did not boot; trying once more" >&2
done
status=$(grep -a -o 'RFAAS-GUEST-EXIT=[0-9]*' "$console" | tail -n 1 | cut -d= -f2 || true)
if [[ -n "$status" ]]; then exit "$status"; fi
if [[ $rc -eq 124 ]]; then
  echo "softroce-guest.sh: the guest ran out of time (${limit} s)" >&2
  exit 124
fi
grep -aq RFAAS-GUEST-BOOTED "$console" && echo "softroce-guest.sh: the command never reported" >&2 ||
  echo "softroce-guest.sh: the guest did not boot" >&2
exit 125
