#!/bin/sh
# Installs the Debian packages kura needs to build, run, test and benchmark.
# Does nothing when they are all present; needs root (or sudo) otherwise.
set -e
PKGS="build-essential pkg-config liburing-dev libisal-dev librocksdb-dev uuid-dev libzstd-dev fio"
# The iSCSI target's judges and clients: tgt (reference target), libiscsi's
# tools (iscsi-test-cu, iscsi-perf), qemu-img / qemu-nbd with the iSCSI driver,
# and ss (iproute2, absent from minimal images) to find free ports.
PKGS="$PKGS clang libclang-rt-14-dev tgt libiscsi-bin libiscsi-dev qemu-utils qemu-block-extra iproute2"
# The QoS benchmark's plot.
PKGS="$PKGS gnuplot-nox"
# The cluster: etcd (coordination; tests run a 3-member cluster), libcurl for
# its JSON API, nftables for partitions in the cluster tests.
PKGS="$PKGS etcd-server etcd-client libcurl4-openssl-dev nftables"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
